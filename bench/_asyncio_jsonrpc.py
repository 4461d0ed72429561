"""Baseline: a plain stdlib asyncio newline-delimited JSON-RPC server.

What a careful person writes with the standard library alone: one
`asyncio.start_unix_server`, ``readline`` per request, stdlib ``json``, the
handler awaited in line, ``write`` + ``drain``. It implements only what the
benchmark needs (requests, method-not-found, parse errors); bicameral's
server is measured against it in the same run (SPEC §9).

Run: ``python bench/_asyncio_jsonrpc.py SOCKET_PATH``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


async def _version(params: Any) -> Any:
    return {"daemon_version": "0.1.0", "protocol_version": "1"}


METHODS = {"system.version": _version}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                response: dict[str, Any] = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32700, "message": "parse error"},
                }
            else:
                method = METHODS.get(request.get("method"))
                if method is None:
                    response = {
                        "jsonrpc": "2.0",
                        "id": request.get("id"),
                        "error": {"code": -32601, "message": "method not found"},
                    }
                else:
                    result = await method(request.get("params"))
                    response = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
                if "id" not in request:
                    continue
            writer.write(json.dumps(response, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(path: str) -> None:
    server = await asyncio.start_unix_server(_handle, path, limit=16 * 1024 * 1024, backlog=1024)
    os.chmod(path, 0o600)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
