"""bicameral as the client of a remote server of the 2026-07-28 era (SPEC §8.5, §8.6).

What the suite's client scenarios check, pinned here against the official
SDK's server on uvicorn (tests/mcp/servers/httpserver.py), which logs every
request it gets: with ``era = "stateless"`` no ``initialize`` is ever sent,
only ``server/discover`` and requests that carry the era's headers, and a
``tools/call`` mirrors the tool's ``x-mcp-header`` arguments into
``Mcp-Param-*`` headers (SEP-2243).
"""

from __future__ import annotations

import json

from tests.mcp._support import session, text
from tests.mcp.conftest import McpHome
from tests.mcp.test_remote import free_port, remote


async def test_a_stateless_era_server_is_discovered_never_initialized(mcp_home: McpHome) -> None:
    port = free_port()
    log = mcp_home.path / "requests.jsonl"
    url = f"http://127.0.0.1:{port}/mcp"
    mcp_home.configure({"far": {"url": url, "era": "stateless"}})
    with remote(port, "--log", str(log)):
        async with session(mcp_home, "far") as client:
            answer = await client.call_tool("regional", {"region": "eu-west1", "text": "hi"})
            assert text(answer) == "eu-west1: hi"
            plain = await client.call_tool("regional", {"region": "été à Paris", "text": "x"})
            assert text(plain) == "été à Paris: x"
    posts = [r for r in map(json.loads, log.read_text().splitlines()) if r["method"] == "POST"]
    methods = [r["rpc"] for r in posts]
    assert "initialize" not in methods, methods
    assert methods[0] == "server/discover", methods
    for request in posts:
        headers = request["headers"]
        assert headers.get("mcp-method") == request["rpc"], request
        assert headers.get("mcp-protocol-version") == "2026-07-28", request
    calls = [r["headers"] for r in posts if r["rpc"] == "tools/call"]
    assert len(calls) == 2, methods
    assert calls[0]["mcp-name"] == "regional"
    assert calls[0]["mcp-param-region"] == "eu-west1"
    # Not an HTTP token: base64, marked as such (SEP-2243).
    assert calls[1]["mcp-param-region"].startswith("=?base64?"), calls[1]
