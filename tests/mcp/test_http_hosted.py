"""Hosted mode's settings of the listener: where the token comes from, whose session ids.

The token:

A platform hands secrets to a container as a variable or as a file it
mounts (a Kubernetes Secret's files are root's, 0644 or 0440): the daemon
takes the token from ``$BICAMERAL_HTTP_TOKEN`` or ``[daemon.http]
token_file`` instead of making ``http.token``, keeps the variable from the
servers it starts, and refuses a token too short, or a file others may write.

Session ids: behind a proxy that hashes on ``Mcp-Session-Id``, a session's
id must be the key the proxy hashed its ``initialize`` on, or its next
request lands on another replica; with ``session_id_header`` the proxy
names it (docs/hosting.md, "Affinity").
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest
import trio

from tests.mcp._support import INITIALIZE, TESTSERVER, wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import post_headers, start

TOKEN = "t0k3n-" + "a" * 40


async def _accepted(base: str, key: str) -> bool:
    async with httpx2.AsyncClient(timeout=30) as http:
        ok = await http.post(f"{base}/mcp", json=INITIALIZE, headers=post_headers(key))
        wrong = await http.post(f"{base}/mcp", json=INITIALIZE, headers=post_headers("x" * 64))
    assert wrong.status_code == 401
    return ok.status_code == 200


async def test_the_token_from_the_environment_is_used_and_kept_from_servers(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    mcp_home.env["BICAMERAL_HTTP_TOKEN"] = TOKEN
    base = start(mcp_home)
    assert await _accepted(base, TOKEN)
    assert not (mcp_home.path / "http.token").exists()
    (server,) = wait_until(mcp_home.upstreams)
    assert "BICAMERAL_HTTP_TOKEN" not in server.environ()


async def test_the_token_from_a_mounted_secret_file(mcp_home: McpHome, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o444)  # readable by all, as a Secret's file may be
    mcp_home.configure({}, daemon=f'[daemon.http]\ntoken_file = "{secret}"\n')
    base = start(mcp_home)
    assert await _accepted(base, TOKEN)
    assert not (mcp_home.path / "http.token").exists()


@pytest.mark.parametrize(
    ("content", "mode", "complaint"),
    [
        ("short", 0o600, "at least 32 characters"),
        ("has a space " + "a" * 40, 0o600, "printable ASCII without spaces"),
        (TOKEN, 0o666, "writable by group or others"),
    ],
)
def test_a_bad_token_file_fails_the_start_in_one_line(
    mcp_home: McpHome, tmp_path: Path, content: str, mode: int, complaint: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text(content)
    secret.chmod(mode)
    mcp_home.configure(
        {}, daemon=f'[daemon.http]\nlisten = "127.0.0.1:0"\ntoken_file = "{secret}"\n'
    )
    done = mcp_home.cli("daemon", "start")
    assert done.returncode == 1
    assert complaint in done.stderr and str(secret) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert mcp_home.descriptor() is None


def test_a_missing_token_file_is_named(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {}, daemon='[daemon.http]\nlisten = "127.0.0.1:0"\ntoken_file = "/nonexistent/token"\n'
    )
    done = mcp_home.cli("daemon", "start")
    assert done.returncode == 1
    assert "/nonexistent/token" in done.stderr and "No such file" in done.stderr, done.stderr
    assert not (mcp_home.path / "daemon.sock").exists()


async def test_a_new_session_takes_its_id_from_the_proxys_header(mcp_home: McpHome) -> None:
    mcp_home.configure({}, daemon='[daemon.http]\nsession_id_header = "X-Request-ID"\n')
    base = start(mcp_home)
    key = (mcp_home.path / "http.token").read_text().strip()
    chosen = "0123456789abcdef" * 2
    async with httpx2.AsyncClient(timeout=30) as http:

        async def initialize(request_id: str | None) -> str:
            headers = post_headers(key)
            if request_id is not None:
                headers["X-Request-ID"] = request_id
            answer = await http.post(f"{base}/mcp", json=INITIALIZE, headers=headers)
            assert answer.status_code == 200, answer.text
            return str(answer.headers["mcp-session-id"])

        assert await initialize(chosen) == chosen
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        pong = await http.post(
            f"{base}/mcp", json=ping, headers={**post_headers(key), "Mcp-Session-Id": chosen}
        )
        assert pong.status_code == 200, pong.text
        # In use already, too short, or with characters a header value must
        # not carry into an id: a random id instead, never a shared session.
        for bad in (chosen, "short", "x" * 31 + "/", None):
            other = await initialize(bad)
            assert other != chosen and len(other) == 32


#: A test server that waits for a file before it starts (its first start, held open).
GATED = (
    "import os, runpy, sys, time\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


async def test_readyz_waits_for_the_servers_first_start(mcp_home: McpHome, tmp_path: Path) -> None:
    """A platform routes to a replica once /readyz says ready: its servers are up by then."""
    gate = tmp_path / "gate"
    server = [TESTSERVER, "--name", "slow", "--home-tag", str(mcp_home.path)]
    mcp_home.configure(
        {"slow": {"command": sys.executable, "args": ["-c", GATED, str(gate), *server]}}
    )
    base = start(mcp_home)
    async with httpx2.AsyncClient(timeout=10) as http:
        held = await http.get(f"{base}/readyz")
        assert held.status_code == 503, held.text
        assert held.text == "starting: servers warming up: slow\n"
        gate.touch()
        with trio.fail_after(60):
            while True:
                answer = await http.get(f"{base}/readyz")
                if answer.status_code == 200:
                    break
                await trio.sleep(0.05)
        assert answer.text == "ready\n"
