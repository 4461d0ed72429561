"""Remote servers under outage, stall and 5xx (issue 30, findings 2-4; SPEC §8.6).

The remote is the official SDK's server on uvicorn (tests/mcp/servers/
httpserver.py), stopped and started again on the same port for an outage,
told to answer HTTP 500 to everything (``--fail-file``), or called on its
``stall`` tool, whose response stream stays open and silent. The client is
the official SDK's, through `bicameral mcp --server`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp.shared.exceptions import MCPError

from tests.mcp._support import session, text
from tests.mcp.conftest import McpHome, mcp_home  # noqa: F401  (the fixture)
from tests.mcp.test_remote import free_port, remote

from .conftest import wait_for


@pytest.fixture
def home(mcp_home: McpHome) -> Iterator[McpHome]:  # noqa: F811
    yield mcp_home


def row(home: McpHome, name: str = "far") -> dict[str, Any]:
    ps = home.cli("mcp", "ps", "--json")
    assert ps.returncode == 0, ps.stderr
    (found,) = [r for r in json.loads(ps.stdout)["servers"] if r["name"] == name]
    return dict(found)


async def test_an_outage_is_retried_for_as_long_as_it_lasts(home: McpHome) -> None:
    """Finding 2: the remote is down from the start, long enough for the server's
    restarts to run out; `mcp ps` says down and retrying (never a made-up HTTP
    500), and once the remote is back the server is used again, unprompted."""
    port = free_port()
    home.configure({"far": {"url": f"http://127.0.0.1:{port}/mcp"}})
    home.env["BICAMERAL_MCP_BACKOFF"] = "0.05"  # restarts run out in about a second
    assert home.cli("daemon", "start").returncode == 0
    down = wait_for(lambda: (r := row(home))["state"] == "down" and r, 60, "far to be down")
    assert down["retry_at"] is not None
    assert "500" not in str(down["last_error"]), down["last_error"]
    assert "connect" in str(down["last_error"]).lower(), down["last_error"]
    with remote(port):
        back = time.monotonic()
        wait_for(lambda: row(home)["state"] == "ready", 60, "far to be back")
        assert time.monotonic() - back < 45  # within one backoff step (30 s at most)
        async with session(home, "far") as client:
            assert text(await client.call_tool("echo", {"text": "back"})) == "back"


async def test_a_stalled_call_is_cut_naming_the_server_and_ps_shows_it(home: McpHome) -> None:
    """Finding 3: a response stream that stalls is cut after call_timeout; the
    error names the server and the stall; `mcp ps` shows the server degraded
    until a call answers again."""
    port = free_port()
    home.configure({"far": {"url": f"http://127.0.0.1:{port}/mcp", "call_timeout": 2}})
    with remote(port):
        async with session(home, "far") as client:
            began = time.monotonic()
            with trio.fail_after(60), pytest.raises(MCPError) as stalled:
                await client.call_tool("stall", {})
            assert time.monotonic() - began < 30
            message = str(stalled.value)
            assert "'far'" in message and "call_timeout" in message, message
            shown = row(home)
            assert shown["state"] == "degraded", shown
            assert "stall" in str(shown["last_error"]), shown
            assert text(await client.call_tool("echo", {"text": "fine"})) == "fine"
            assert row(home)["state"] == "ready"


async def test_http_500_marks_the_server_degraded_and_errors_name_it(
    home: McpHome, tmp_path: Path
) -> None:
    """Finding 4: a remote answering HTTP 500 to everything is `degraded` while
    it lasts, and the call's error names the server and the status."""
    port = free_port()
    failing = tmp_path / "fail"
    home.configure({"far": {"url": f"http://127.0.0.1:{port}/mcp"}})
    with remote(port, "--fail-file", str(failing)):
        async with session(home, "far") as client:
            assert text(await client.call_tool("echo", {"text": "ok"})) == "ok"
            failing.touch()
            with pytest.raises(MCPError) as refused:
                await client.call_tool("echo", {"text": "now?"})
            message = str(refused.value)
            assert "'far'" in message and "HTTP 500" in message, message
            shown = row(home)
            assert shown["state"] == "degraded" and "HTTP 500" in str(shown["last_error"]), shown
            failing.unlink()
            with trio.fail_after(60):
                while True:
                    try:
                        answer = await client.call_tool("echo", {"text": "back"})
                        break
                    except MCPError as exc:
                        assert "'far'" in str(exc), exc
            assert text(answer) == "back"
            assert row(home)["state"] == "ready"
