"""Where the listener's token comes from in hosted mode: an env variable or a mounted file.

A platform hands secrets to a container as a variable or as a file it
mounts (a Kubernetes Secret's files are root's, 0644 or 0440): the daemon
takes the token from ``$BICAMERAL_HTTP_TOKEN`` or ``[daemon.http]
token_file`` instead of making ``http.token``, keeps the variable from the
servers it starts, and refuses a token too short, or a file others may write.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.mcp._support import INITIALIZE, wait_until
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
