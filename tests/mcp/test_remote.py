"""Remote MCP servers (``url = ...``): streamable HTTP and SSE upstreams, bearer tokens.

The remote is the official SDK's server on uvicorn, on 127.0.0.1, in a
process of its own (tests/mcp/servers/httpserver.py); the client is the
official SDK's, through `bicameral mcp --server`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from tests.mcp._support import session, text, wait_until
from tests.mcp.conftest import McpHome

HTTPSERVER = str(Path(__file__).parent / "servers" / "httpserver.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def remote(port: int, *args: str, script: str = HTTPSERVER) -> Iterator[subprocess.Popen[bytes]]:
    """The remote server on `port`, up (accepting connections) when this yields."""
    proc = subprocess.Popen([sys.executable, script, str(port), *args])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def call_until_it_answers(client: ClientSession, tool: str, **arguments: Any) -> str:
    """Call until the server answers: calls made while it is away fail, naming it."""
    with trio.fail_after(60):
        while True:
            try:
                return text(await client.call_tool(tool, arguments))
            except MCPError as exc:
                assert "remote" in str(exc), exc


async def test_a_streamable_http_server_survives_its_own_restart_on_the_same_port(
    mcp_home: McpHome,
) -> None:
    port = free_port()
    mcp_home.configure({"remote": {"url": f"http://127.0.0.1:{port}/mcp"}})
    with remote(port) as first:
        async with session(mcp_home, "remote") as client:
            assert text(await client.call_tool("echo", {"text": "hello"})) == "hello"
            assert int(text(await client.call_tool("pid", {}))) == first.pid
            first.terminate()
            first.wait(timeout=10)
            with remote(port) as second:
                # The same client session, never reconnected: the daemon
                # connects to the new server (a new MCP session) by itself.
                assert int(await call_until_it_answers(client, "pid")) == second.pid
                assert text(await client.call_tool("echo", {"text": "again"})) == "again"


async def test_a_legacy_sse_server(mcp_home: McpHome) -> None:
    port = free_port()
    mcp_home.configure({"old": {"url": f"http://127.0.0.1:{port}/sse", "transport": "sse"}})
    with remote(port, "--sse") as server:
        async with session(mcp_home, "old") as client:
            assert text(await client.call_tool("echo", {"text": "sse"})) == "sse"
            assert int(text(await client.call_tool("pid", {}))) == server.pid
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == {"echo", "pid", "headers", "stall", "regional"}


async def test_a_bearer_token_from_the_environment_is_sent_and_required(
    mcp_home: McpHome,
) -> None:
    port = free_port()
    mcp_home.env["REMOTE_TOKEN"] = "s3cret"
    url = f"http://127.0.0.1:{port}/mcp"
    mcp_home.configure(
        {
            "good": {
                "url": url,
                "auth": "bearer",
                "token": "${env:REMOTE_TOKEN}",
                "headers": {"X-Team": "blue"},
            },
            "bad": {"url": url},
        }
    )
    with remote(port, "--token", "s3cret"):
        async with session(mcp_home, "good") as client:
            seen = json.loads(text(await client.call_tool("headers", {})))
            assert seen["authorization"] == "Bearer s3cret" and seen["x-team"] == "blue"

        def bad_row() -> dict[str, Any] | None:
            rows = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)["servers"]
            row: dict[str, Any] = next(r for r in rows if r["name"] == "bad")
            return row if row["last_error"] else None

        row = wait_until(bad_row)
        assert "401" in row["last_error"] and row["state"] != "ready", row


async def test_mcp_add_url_and_ps_show_a_remote_server(mcp_home: McpHome) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    added = mcp_home.cli("mcp", "add", "far", "--url", url, "--header", "X-Team=blue", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["server"]["url"] == url
    refused = mcp_home.cli("mcp", "add", "plain", "--url", "http://example.com/mcp")
    assert refused.returncode == 1 and "https://" in refused.stderr
    with remote(port):
        async with session(mcp_home, "far") as client:
            seen = json.loads(text(await client.call_tool("headers", {})))
            assert seen["x-team"] == "blue"
            (row,) = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)["servers"]
            assert row["url"] == url and row["auth"] == "none" and row["state"] == "ready"


@pytest.mark.parametrize("era", ["handshake", "modern-only"])
async def test_every_request_to_a_remote_server_carries_its_configured_headers(
    mcp_home: McpHome, era: str
) -> None:
    """SPEC §8.6: the configured headers go with every request, the era probe included."""
    port = free_port()
    mcp_home.env["REMOTE_TOKEN"] = "s3cret"
    log = mcp_home.path / "requests.jsonl"
    mcp_home.configure(
        {
            "good": {
                "url": f"http://127.0.0.1:{port}/mcp",
                "headers": {"X-Team": "blue", "Authorization": "Bearer ${env:REMOTE_TOKEN}"},
            },
        }
    )
    with remote(port, "--log", str(log), *(["--modern-only"] if era == "modern-only" else [])):
        async with session(mcp_home, "good") as client:
            assert text(await client.call_tool("echo", {"text": "hi"})) == "hi"
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["method"] == "POST" for r in requests), requests
    for request in requests:
        headers = request["headers"]
        assert headers.get("authorization") == "Bearer s3cret", request
        assert headers.get("x-team") == "blue", request
