"""``[daemon.store]``: replicas share OAuth tokens in a real Redis and refresh them once.

Two daemons (two state directories, as two replicas) share one
``redis-server``; the remote server is the SDK's, as authorization server
and resource server (tests/mcp/servers/oauthserver.py), which counts the
refreshes it serves. A store that does not answer stops nothing but what
needs it, and ``/readyz`` and ``mcp ps`` say so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import trio

from tests._redis import RedisServer, redis_server
from tests.mcp._support import session, text, wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import start
from tests.mcp.test_oauth import call_until_ready, login, remote_oauth, row, stats
from tests.mcp.test_remote import free_port


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def replica() -> Iterator[McpHome]:
    """A second state directory and daemon: another replica."""
    home = McpHome()
    try:
        yield home
    finally:
        problems = home.teardown()
        assert not problems, problems


def _record(redis: RedisServer) -> dict[str, Any]:
    raw = redis.client().get("bicameral:oauth:g")  # type: ignore[attr-defined]
    return json.loads(raw) if raw else {}


async def _until(probe: Any, done: Any) -> Any:
    """`probe()` again until `done` holds for what it returned (30 s at most)."""
    with trio.fail_after(30):
        while True:
            value = await probe()
            if done(value):
                return value
            await trio.sleep(0.1)


async def _past_expiry(redis: RedisServer) -> None:
    """Until the shared access token has expired (a fact to wait for, not a margin)."""
    expires_at = _record(redis)["expires_at"]
    await trio.sleep(max(0.0, expires_at - time.time()) + 0.1)
    assert time.time() > expires_at


async def test_replicas_share_a_login_and_refresh_it_once(
    mcp_home: McpHome, replica: McpHome, redis: RedisServer
) -> None:
    port = free_port()
    store = f'[daemon.store]\nurl = "{redis.url}"\nlock_timeout = 3\n'
    for home in (mcp_home, replica):
        home.configure({"g": {"url": f"http://127.0.0.1:{port}/mcp", "auth": "oauth"}}, store)
    with remote_oauth(port, "--token-ttl", "8"):
        for home in (mcp_home, replica):
            assert home.cli("daemon", "start").returncode == 0
        for home in (mcp_home, replica):
            wait_until(lambda home=home: row(home, "g")["state"] == "needs-login")  # type: ignore[misc]
        # One login, in one replica's state directory: the other picks it up
        # from the store, with nothing on its own disk.
        done = login(mcp_home, "g")
        assert done.returncode == 0, done
        wait_until(lambda: _record(redis).get("tokens"))
        for home in (mcp_home, replica):
            wait_until(lambda home=home: row(home, "g")["state"] == "ready", timeout=60)  # type: ignore[misc]
        assert not (replica.path / "tokens" / "g.json").exists()
        assert row(replica, "g")["auth"] == "oauth (logged in)"

        async with (
            session(mcp_home, "g") as a1,
            session(mcp_home, "g") as a2,
            session(replica, "g") as b1,
            session(replica, "g") as b2,
        ):
            clients = (a1, a2, b1, b2)
            for client in clients:
                assert await call_until_ready(client) == "hello"
            before = await stats(a1)
            await _past_expiry(redis)
            async with trio.open_nursery() as nursery:
                for client in clients * 3:
                    nursery.start_soon(client.call_tool, "echo", {"text": "y"})
            after = await stats(b1)
            assert after["refresh_token"] == before["refresh_token"] + 1, (before, after)

            # A replica that died holding the refresh lock blocks the others
            # only until the lock's timeout (3 s here), then one refreshes.
            await _past_expiry(redis)
            held = redis.client().set(  # type: ignore[attr-defined]
                "bicameral:oauth:g:refresh", "a dead replica", px=3000, nx=True
            )
            assert held
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(client.call_tool, "echo", {"text": "z"})
            last = await stats(a2)
            assert last["refresh_token"] == after["refresh_token"] + 1, (after, last)
            assert last["authorization_code"] == before["authorization_code"]


async def test_an_unreachable_store_is_said_and_the_rest_keeps_serving(
    mcp_home: McpHome,
) -> None:
    down = RedisServer()  # its port: nothing listens there yet
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")},
        f'[daemon.store]\nurl = "redis://:hunter2@127.0.0.1:{down.port}/0"\n',
    )
    base = start(mcp_home)
    try:
        async with httpx2.AsyncClient(timeout=10) as http:

            async def readyz() -> str:
                # 200 once its server has started (not before: it warms up),
                # and still 200 without the store: it stays in rotation.
                answer = await http.get(f"{base}/readyz")
                return answer.text if answer.status_code == 200 else ""

            said = await _until(readyz, lambda text: "store unreachable" in text)
            assert said.startswith("ready\n")
            ps = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)
            assert ps["store"]["state"] == "unreachable" and ps["store"]["problem"]
            assert "hunter2" not in json.dumps(ps) and ":***@" in ps["store"]["url"]
            human = mcp_home.cli("mcp", "ps").stdout
            assert "unreachable" in human and "hunter2" not in human
            async with session(mcp_home, "alpha") as client:
                assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"
            # The store comes back: the daemon notices by itself.
            down.start()
            try:
                await _until(readyz, lambda text: text == "ready\n")
                ps = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)
                assert ps["store"]["state"] == "ok"
            finally:
                down.stop()
    finally:
        mcp_home.cli("daemon", "stop")


async def test_the_store_url_from_the_environment_is_kept_from_servers(
    mcp_home: McpHome, redis: RedisServer
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    mcp_home.env["BICAMERAL_STORE_URL"] = redis.url
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)["store"])
    ps = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)
    assert ps["store"]["url"] == redis.url
    (server,) = wait_until(mcp_home.upstreams)
    assert "BICAMERAL_STORE_URL" not in server.environ()


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ('url = "http://127.0.0.1:6379"', "must be a redis://, rediss:// or unix:// URL"),
        ('url = "redis://x"\nlock_timeout = 0', "lock_timeout must be 1 to 600 seconds"),
        ('url = "redis://x"\nlock_timeout = "5"', "lock_timeout must be a number of seconds"),
        ('uri = "redis://x"', "unknown key 'uri' in [daemon.store]"),
    ],
)
def test_a_bad_store_table_fails_the_start_in_one_line(
    mcp_home: McpHome, table: str, complaint: str
) -> None:
    mcp_home.configure({}, f"[daemon.store]\n{table}\n")
    done = mcp_home.cli("daemon", "start")
    assert done.returncode == 1
    assert complaint in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert mcp_home.descriptor() is None
