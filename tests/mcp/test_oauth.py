"""OAuth for a remote server, end to end: login with a scripted browser, calls,
one refresh for many clients, logout, and a malicious authorization server.

The server is the official SDK's, as authorization server and resource
server at once (tests/mcp/servers/oauthserver.py); the "browser" is an HTTP
GET of the printed URL that follows the redirect to bicameral's loopback
callback, as a browser would.
"""

from __future__ import annotations

import json
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from mcp.shared.exceptions import MCPError

from tests.mcp._support import session, text, wait_until
from tests.mcp.conftest import BICAMERAL, McpHome
from tests.mcp.test_remote import free_port, remote

OAUTHSERVER = str(Path(__file__).parent / "servers" / "oauthserver.py")


def login(home: McpHome, name: str) -> subprocess.CompletedProcess[str]:
    """`bicameral mcp login NAME`, with a scripted browser that approves at once."""
    env = dict(home.env, BICAMERAL_NO_BROWSER="1")
    proc = subprocess.Popen(
        [BICAMERAL, "--home", str(home.path), "mcp", "login", name, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("http"):
            answer = httpx2.get(line.strip(), follow_redirects=True, timeout=30)
            assert answer.status_code == 200 and "logged in" in answer.text
            break
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(lines) + err)


def row(home: McpHome, name: str) -> dict[str, Any]:
    rows = json.loads(home.cli("mcp", "ps", "--json").stdout)["servers"]
    found: dict[str, Any] = next(r for r in rows if r["name"] == name)
    return found


async def stats(client: Any) -> dict[str, int]:
    counts: dict[str, int] = json.loads(text(await client.call_tool("stats", {})))
    return counts


def test_a_malicious_authorization_endpoint_is_refused(mcp_home: McpHome) -> None:
    port = free_port()
    mcp_home.configure({"evil": {"url": f"http://127.0.0.1:{port}/mcp", "auth": "oauth"}})
    with remote_oauth(port, "--evil"):
        done = login(mcp_home, "evil")
    assert done.returncode == 1, done
    assert "refusing the OAuth endpoint 'http://attacker.example/authorize" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (mcp_home.path / "tokens" / "evil.json").exists() or "tokens" not in json.loads(
        (mcp_home.path / "tokens" / "evil.json").read_text()
    )


def remote_oauth(port: int, *args: str) -> Any:
    return remote(port, *args, script=OAUTHSERVER)


@pytest.mark.parametrize("store", ["file", "keyring"])
async def test_login_calls_one_refresh_for_two_clients_and_logout(
    mcp_home: McpHome, store: str
) -> None:
    ring = mcp_home.path / "keyring.json"
    if store == "keyring":
        # An OS keyring stand-in, seen by the CLI and the daemon alike.
        mcp_home.env["PYTHON_KEYRING_BACKEND"] = "tests.mcp.keyring_backend.FileKeyring"
        mcp_home.env["BICAMERAL_TEST_KEYRING"] = str(ring)
        mcp_home.env["PYTHONPATH"] = str(Path(__file__).parents[2])
    port = free_port()
    mcp_home.configure({"g": {"url": f"http://127.0.0.1:{port}/mcp", "auth": "oauth"}})
    with remote_oauth(port, "--token-ttl", "6"):
        assert mcp_home.cli("daemon", "start").returncode == 0
        needs = wait_until(
            lambda: row(mcp_home, "g") if row(mcp_home, "g")["state"] == "needs-login" else None
        )
        assert needs["auth"] == "oauth (needs login)"
        # A client cannot even initialize; it is told what to run.
        with pytest.raises(BaseException) as refused:
            async with session(mcp_home, "g"):
                pass
        rendered = "".join(traceback.format_exception(refused.value))
        assert "needs a login: run `bicameral mcp login g`" in rendered
        done = login(mcp_home, "g")
        assert done.returncode == 0, done
        assert json.loads(done.stdout)["daemon"] == "reconnected"
        tokens = mcp_home.path / "tokens" / "g.json"
        assert tokens.stat().st_mode & 0o777 == 0o600
        stored = json.loads(tokens.read_text())
        if store == "keyring":
            assert "tokens" not in stored and stored["keyring"] is True
            assert "access_token" in next(iter(json.loads(ring.read_text()).values()))
        else:
            assert "access_token" in stored["tokens"]
        async with session(mcp_home, "g") as a, session(mcp_home, "g") as b:
            assert await call_until_ready(a) == "hello"
            before = await stats(a)
            # The access token lives 6 s (room for a loaded machine to log in
            # and connect): wait until it has expired (a fact
            # to wait for, not a margin), then let both clients call at once.
            expires_at = json.loads(tokens.read_text())["expires_at"]
            await trio.sleep(max(0.0, expires_at - time.time()) + 0.1)
            assert time.time() > expires_at
            async with trio.open_nursery() as nursery:
                for client in (a, b, a, b):
                    nursery.start_soon(client.call_tool, "echo", {"text": "y"})
            after = await stats(a)
            assert after["refresh_token"] == before["refresh_token"] + 1, (before, after)
            assert after["authorization_code"] == before["authorization_code"]
        assert row(mcp_home, "g")["auth"] == "oauth (logged in)"
        out = mcp_home.cli("mcp", "logout", "g", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["status"] == "logged-out"
        assert not tokens.exists()
        if store == "keyring":
            assert json.loads(ring.read_text()) == {}
        wait_until(lambda: row(mcp_home, "g")["state"] == "needs-login")


async def call_until_ready(client: Any) -> str:
    with trio.fail_after(30):
        while True:
            try:
                return text(await client.call_tool("echo", {"text": "hello"}))
            except MCPError as exc:
                assert "login" in str(exc) or "'g'" in str(exc), exc
