"""bicameral as the client of a remote server of the 2026-07-28 era (SPEC §8.5, §8.6).

What the suite's client scenarios check, pinned here against the official
SDK's server on uvicorn (tests/mcp/servers/httpserver.py), which logs every
request it gets: with ``era = "stateless"`` no ``initialize`` is ever sent,
only ``server/discover`` and requests that carry the era's headers, and a
``tools/call`` mirrors the tool's ``x-mcp-header`` arguments into
``Mcp-Param-*`` headers (SEP-2243). And an OAuth scope step-up: a call
refused for want of scope (HTTP 403 ``insufficient_scope``) shows the server
``needs-login``, and the next ``mcp login --no-browser`` asks for the union of
the granted and the challenged scope (SEP-2350), after which the call works.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp._support import session, text, wait_until
from tests.mcp.conftest import BICAMERAL, McpHome
from tests.mcp.test_remote import free_port, remote

OAUTHSERVER = str(Path(__file__).parent / "servers" / "oauthserver.py")


def login(home: McpHome, name: str) -> subprocess.CompletedProcess[str]:
    """`mcp login --no-browser`: each URL it prints followed by an HTTP client."""
    proc = subprocess.Popen(
        [BICAMERAL, "--home", str(home.path), "mcp", "login", name, "--no-browser", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("http"):
            answer = httpx2.get(line.strip(), follow_redirects=True, timeout=30)
            assert answer.status_code == 200 and "logged in" in answer.text
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(lines) + err)


def state(home: McpHome, name: str) -> str:
    rows = json.loads(home.cli("mcp", "ps", "--json").stdout)["servers"]
    return str(next(r for r in rows if r["name"] == name)["state"])


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


async def test_a_scope_step_up_is_a_login_for_the_union_of_scopes(mcp_home: McpHome) -> None:
    port = free_port()
    mcp_home.configure({"g": {"url": f"http://127.0.0.1:{port}/mcp", "auth": "oauth"}})
    with remote(port, "--step-up", "admin", script=OAUTHSERVER):
        first = login(mcp_home, "g")
        assert first.returncode == 0, first
        assert "open this URL:\nhttp" in first.stderr  # the URL alone on its line
        assert mcp_home.cli("daemon", "start").returncode == 0
        wait_until(lambda: state(mcp_home, "g") == "ready")
        async with session(mcp_home, "g") as client:
            assert text(await client.call_tool("echo", {"text": "hi"})) == "hi"
            with pytest.raises(MCPError):
                await client.call_tool("admin", {})
        wait_until(lambda: state(mcp_home, "g") == "needs-login")
        stored = json.loads((mcp_home.path / "tokens" / "g.json").read_text())
        assert stored["step_up"] == "admin", stored
        again = login(mcp_home, "g")
        assert again.returncode == 0, again
        assert "scope=admin" in again.stderr
        wait_until(lambda: state(mcp_home, "g") == "ready")
        async with session(mcp_home, "g") as client:
            assert text(await client.call_tool("admin", {})) == "admin done"
            asked = json.loads(text(await client.call_tool("stats", {})))["asked"]
        assert asked == ["", "admin"], asked
        assert "step_up" not in json.loads((mcp_home.path / "tokens" / "g.json").read_text())
