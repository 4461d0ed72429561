"""A deliberately broken MCP server for the isolation tests (stdlib only).

``hostile.py MODE [--home-tag DIR]``: speaks just enough MCP by hand
(``initialize``, ``tools/list``, ``tools/call`` of ``echo``, ``ping``), then
misbehaves as MODE says, once the client has sent
``notifications/initialized`` or a first ``tools/list``:

- ``mute``: never answers ``initialize`` (nor anything else);
- ``crash``: exits with status 7 at once, before reading anything;
- ``flood``: writes ``notifications/message`` as fast as the pipe takes them;
- ``noise``: writes lines that are not JSON, without end (like ``yes``);
- ``endless``: writes one line that never ends;
- ``badid``: answers every ``tools/call`` twice, first with ``"id": [1]``
  (an id no request can have), then properly; otherwise well-behaved;
- ``link``: its ``tools/call`` returns a ``resource_link`` to ``file:///doc.txt``,
  which ``resources/read`` serves (a well-behaved server, for link rewriting);
- ``progress``: answers a ``tools/call`` that carries a progress token with
  ten progress notifications and the response, all in one write, so they
  reach the daemon in one read.
"""

from __future__ import annotations

import json
import sys
import threading

MODE = sys.argv[1]


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def misbehave() -> None:
    out = sys.stdout.buffer
    try:
        if MODE == "flood":
            note = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {"level": "info", "data": "x" * 200},
                }
            ).encode()
            chunk = (note + b"\n") * 64
            while True:
                out.write(chunk)
                out.flush()
        elif MODE == "noise":
            chunk = b"y\n" * 32768
            while True:
                out.write(chunk)
                out.flush()
        elif MODE == "endless":
            chunk = b"z" * 65536
            while True:
                out.write(chunk)
                out.flush()
    except (BrokenPipeError, OSError):
        pass


def main() -> None:
    if MODE == "crash":
        sys.stderr.write("crashing on purpose\n")
        sys.exit(7)
    started = False
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if MODE == "mute":
            continue
        method, rid = msg.get("method"), msg.get("id")
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "result": {
                        "protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                        # Resources only where they are the point: a flood
                        # starts after tools/list, with nothing left to list.
                        "capabilities": {"tools": {}, "resources": {}}
                        if MODE == "link"
                        else {"tools": {}},
                        "serverInfo": {"name": f"hostile-{MODE}", "version": "1"},
                    },
                }
            )
        elif method == "tools/list":
            tool = {"name": "echo", "inputSchema": {"type": "object"}}
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [tool]}})
        elif method == "resources/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"resources": []}})
        elif method == "resources/read":
            uri = msg["params"].get("uri")
            contents = [{"uri": uri, "text": "the doc"}] if uri == "file:///doc.txt" else []
            send({"jsonrpc": "2.0", "id": rid, "result": {"contents": contents}})
        elif method == "tools/call" and MODE == "link":
            link = {"type": "resource_link", "uri": "file:///doc.txt", "name": "doc"}
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [link]}})
        elif method == "tools/call":
            text = json.dumps(msg["params"].get("arguments", {}))
            token = (msg["params"].get("_meta") or {}).get("progressToken")
            if MODE == "progress" and token is not None:
                notes = [
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": i, "total": 10},
                    }
                    for i in range(1, 11)
                ]
                answer = {"jsonrpc": "2.0", "id": rid, "result": {"content": []}}
                sys.stdout.write("".join(json.dumps(m) + "\n" for m in [*notes, answer]))
                sys.stdout.flush()
                continue
            if MODE == "badid":
                send({"jsonrpc": "2.0", "id": [1], "result": {}})
            content = [{"type": "text", "text": text}]
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": content}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
        elif rid is not None and method is not None:
            error = {"code": -32601, "message": f"method not found: {method}"}
            send({"jsonrpc": "2.0", "id": rid, "error": error})
        # After its tools/list answer is written: the daemon has all it needs
        # to call the server ready, and the flood cannot hold that answer up.
        if not started and method == "tools/list":
            started = True
            if MODE in ("flood", "noise", "endless"):
                threading.Thread(target=misbehave, daemon=True).start()


if __name__ == "__main__":
    main()
