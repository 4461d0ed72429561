"""A remote MCP server for bicameral's tests: the official SDK's server on uvicorn.

``python httpserver.py PORT [--sse] [--token TOKEN] [--name NAME]`` serves
MCP on ``http://127.0.0.1:PORT/mcp`` (streamable HTTP) or ``/sse`` (legacy
SSE). With ``--token``, every request without ``Authorization: Bearer TOKEN``
is refused with 401; with ``--log FILE``, each request's method, path,
headers and (``rpc``) JSON-RPC method are appended to FILE as one JSON line;
with ``--modern-only`` the ``initialize`` handshake is refused (-32022), as a
server of the 2026-07-28 era alone does; with ``--fail-file PATH``, every
request is answered HTTP 500 while that file exists. Tools: ``echo``,
``pid`` (this process's pid), ``headers`` (the headers it was sent, as
JSON), ``stall`` (never answers: the response stream stays open and silent),
``regional`` (its ``region`` argument is marked ``x-mcp-header: Region``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

port = int(sys.argv[1])
sse = "--sse" in sys.argv
token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "remote"
log = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else None
modern_only = "--modern-only" in sys.argv
fail_file = sys.argv[sys.argv.index("--fail-file") + 1] if "--fail-file" in sys.argv else None

server: MCPServer = MCPServer(name, version="2.0.0", log_level="WARNING")
seen_headers: dict[str, str] = {}


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def pid() -> int:
    """This server process's pid."""
    return os.getpid()


async def headers(ctx: Context) -> str:
    """The headers of the last request, as JSON."""
    return json.dumps(seen_headers)


async def stall() -> str:
    """Never answers (until the call is cancelled)."""
    await anyio.sleep_forever()
    return "unreachable"


def regional(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], text: str
) -> str:
    """Return the region and the text (the region is mirrored into a header, SEP-2243)."""
    return f"{region}: {text}"


for fn in (echo, pid, headers, stall, regional):
    server.add_tool(fn)

security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
if sse:
    app: Any = server.sse_app(transport_security=security)
else:
    app = server.streamable_http_app(transport_security=security)


class _Replay:
    """A request's body, read whole, handed on as if not read yet."""

    def __init__(self, body: bytes, receive: Any) -> None:
        self.body: bytes | None = body
        self.whole = body
        self._receive = receive

    async def __call__(self) -> Any:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


async def _buffered(receive: Any) -> _Replay:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return _Replay(body, receive)


def _rpc_method(replay: _Replay) -> Any:
    try:
        request = json.loads(replay.whole)
    except ValueError:
        return None
    return request.get("method") if isinstance(request, dict) else None


async def guarded(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        got = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
        seen_headers.clear()
        seen_headers.update(got)
        if log is not None:
            rpc = None
            if scope["method"] == "POST":
                receive = await _buffered(receive)
                rpc = _rpc_method(receive)
            with open(log, "a") as f:  # noqa: ASYNC230 (a test server, one line)
                entry = {"method": scope["method"], "path": scope["path"], "headers": got}
                f.write(json.dumps({**entry, "rpc": rpc}) + "\n")
        if fail_file is not None and os.path.exists(fail_file):  # noqa: ASYNC240  (a stat)
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"internal error"})
            return
        if token is not None and got.get("authorization") != f"Bearer {token}":
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
    if modern_only and scope["type"] == "http" and scope["method"] == "POST":
        # Refuse the initialize handshake, as a server of the 2026-07-28 era
        # alone does; everything else goes on to the SDK's dual-era app.
        if not isinstance(receive, _Replay):
            receive = await _buffered(receive)
        body = receive.whole
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("method") == "initialize":
            refusal = {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {
                    "code": -32022,
                    "message": "this server speaks only 2026-07-28",
                    "data": {"supported": ["2026-07-28"], "requested": "?"},
                },
            }
            data = json.dumps(refusal).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        await app(scope, receive, send)
        return
    await app(scope, receive, send)


async def main() -> None:
    config = uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    anyio.run(main)
