"""A light MCP server for tests where the server itself is incidental.

Run as ``python lightserver.py [--name NAME]``; it speaks MCP (the
``initialize`` handshake era, 2025-11-25 and earlier) over stdio with the
standard library alone.

Why a second fixture server: the SDK's server (``testserver.py``) costs about
1.4 s of CPU to start, almost all of it building the SDK's pydantic models.
Tests about supervision, churn and the CLI start hundreds of servers, and the
suite must fit its time budget on a 2-core machine, so those tests use this
one (tens of milliseconds to start). Everything about the protocol itself
(eras, sharing, server->client requests, resources, tasks) keeps using the
SDK's server, and the conformance suite checks bicameral against real
implementations besides.

Tools, the same names and meanings as ``testserver.py``: ``echo``, ``add``,
``pid``, ``slow`` (progress, then an answer), ``crash`` (exits at once) and
``hang`` (blocks the whole server, so pings go unanswered). It answers
``server/discover`` with -32601, as a server of the handshake era does.
``TESTSERVER_FAIL_IF`` and ``TESTSERVER_NO_TOOLS_IF`` work as in
``testserver.py``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

NAME = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "lightserver"
VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")


def _schema(**props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": v, "title": k.title()} for k, v in props.items()},
        "required": list(props),
    }


TOOLS = [
    {"name": "echo", "description": "Return the text unchanged.", "schema": _schema(text="string")},
    {
        "name": "add",
        "description": "Add two integers.",
        "schema": _schema(a="integer", b="integer"),
    },
    {"name": "pid", "description": "This server process's pid.", "schema": _schema()},
    {
        "name": "slow",
        "description": "Report `steps` progress notifications `delay` seconds apart, then answer.",
        "schema": _schema(steps="integer", delay="number"),
    },
    {"name": "crash", "description": "Exit the server process at once, mid-call.", "schema": {}},
    {"name": "hang", "description": "Block the whole server for a long time.", "schema": {}},
]

_out = threading.Lock()


def send(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    with _out:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


def answer(rid: Any, result: Any = None, error: tuple[int, str] | None = None) -> None:
    if error is not None:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": error[0], "message": error[1]}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "result": result})


def text_result(value: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": str(value)}],
        "structuredContent": {"result": value},
        "isError": False,
    }


def call(rid: Any, params: dict[str, Any]) -> None:
    """One ``tools/call``, in a thread of its own (calls run concurrently)."""
    name = params.get("name")
    args = params.get("arguments") or {}
    token = (params.get("_meta") or {}).get("progressToken")
    try:
        if name == "echo":
            answer(rid, text_result(str(args["text"])))
        elif name == "add":
            answer(rid, text_result(int(args["a"]) + int(args["b"])))
        elif name == "pid":
            answer(rid, text_result(os.getpid()))
        elif name == "slow":
            steps, delay = int(args["steps"]), float(args["delay"])
            for i in range(steps):
                if token is not None:
                    send(
                        {
                            "jsonrpc": "2.0",
                            "method": "notifications/progress",
                            "params": {
                                "progressToken": token,
                                "progress": i + 1,
                                "total": steps,
                                "message": f"step {i + 1}",
                            },
                        }
                    )
                time.sleep(delay)
            answer(rid, text_result(f"done after {steps} steps"))
        elif name == "crash":
            os._exit(1)
        else:
            answer(
                rid,
                {"content": [{"type": "text", "text": f"Unknown tool: {name}"}], "isError": True},
            )
    except (KeyError, TypeError, ValueError) as exc:
        answer(
            rid, {"content": [{"type": "text", "text": f"bad arguments: {exc}"}], "isError": True}
        )


def handle(message: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    method, rid = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if method is None or rid is None:
        return  # a response or a notification: nothing to do
    if method == "initialize":
        asked = params.get("protocolVersion")
        answer(
            rid,
            {
                "protocolVersion": asked if asked in VERSIONS else VERSIONS[0],
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": NAME, "version": "1.2.3"},
                "instructions": f"Test server {NAME} for bicameral.",
            },
        )
    elif method == "ping":
        answer(rid, {})
    elif method == "tools/list":
        listed = [
            {
                "name": t["name"],
                "description": t["description"],
                "inputSchema": t["schema"] or {"type": "object", "properties": {}},
            }
            for t in tools
        ]
        answer(rid, {"tools": listed})
    elif method == "tools/call" and params.get("name") == "hang":
        time.sleep(3600)  # the reader itself: pings go unanswered
    elif method == "tools/call":
        threading.Thread(target=call, args=(rid, params), daemon=True).start()
    else:
        answer(rid, error=(-32601, f"Method not found: {method}"))


def main() -> None:
    if os.path.exists(os.environ.get("TESTSERVER_FAIL_IF", "/nonexistent")):
        sys.exit(3)
    no_tools = os.path.exists(os.environ.get("TESTSERVER_NO_TOOLS_IF", "/nonexistent"))
    tools = [] if no_tools else TOOLS
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            handle(message, tools)


if __name__ == "__main__":
    main()
