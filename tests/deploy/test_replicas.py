"""Three replicas behind nginx with a real Redis, under a steady load of both eras.

The load: stateless-era clients (the SDK's ``Client`` in ``auto`` mode,
2026-07-28) and handshake-era clients (``legacy`` mode, sessions) calling a
tool through nginx in a loop, each recording every call's outcome. While it
runs:

* a rolling restart (SIGTERM, one replica at a time, each started again
  and ready before the next) loses no stateless-era call; a handshake-era
  session whose replica restarted ends with HTTP 404 ("Session not
  found"), and the client's new session works;
* SIGKILL of a replica costs a stateless client at most the calls it had
  in flight there (one: each client calls one at a time);
* 3 replicas x 50 clients calling a remote OAuth server past its access
  token's expiry make exactly one refresh at the authorization server.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.deploy._cluster import Cluster
from tests.mcp._support import text
from tests.mcp.conftest import McpHome
from tests.mcp.test_oauth import OAUTHSERVER, login
from tests.mcp.test_remote import free_port, remote

STATELESS = 6
SESSIONS = 6


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    servers = {"alpha": lambda home: home.test_server("alpha")}
    cluster = Cluster(servers)
    try:
        cluster.start()
        yield cluster
    finally:
        problems = cluster.stop()
        assert not problems, problems


@contextlib.asynccontextmanager
async def client(cluster: Cluster, mode: str, url: str | None = None) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=cluster.headers, timeout=60) as http,
        Client(
            streamable_http_client(url or f"{cluster.url}/mcp", http_client=http), mode=mode
        ) as c,  # type: ignore[arg-type]
    ):
        yield c


@dataclass
class Tally:
    """What one load client saw."""

    ok: int = 0
    failed: list[str] = field(default_factory=list)
    sessions: int = 0  # handshake-era clients: sessions opened


class Load:
    """Clients of both eras calling through nginx until `stop` is set."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = trio.Event()
        self.stateless = [Tally() for _ in range(STATELESS)]
        self.sessions = [Tally() for _ in range(SESSIONS)]
        self.warm = trio.Event()
        self._warming = STATELESS + SESSIONS
        #: Calls answered so far, and an event set (and replaced) at each.
        self.calls = 0
        self.progress = trio.Event()

    def _answered(self, tally: Tally) -> None:
        tally.ok += 1
        self.calls += 1
        self.progress.set()
        self.progress = trio.Event()

    def _warmed(self) -> None:
        self._warming -= 1
        if self._warming == 0:
            self.warm.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for tally in self.stateless:
                nursery.start_soon(self._stateless, tally)
            for tally in self.sessions:
                nursery.start_soon(self._session, tally)

    async def _stateless(self, tally: Tally) -> None:
        async with client(self.cluster, "auto") as c:
            assert c.protocol_version == "2026-07-28"
            first = True
            while not self.stop.is_set():
                try:
                    answer = await c.call_tool("alpha__echo", {"text": "x"})
                    assert text(answer) == "x"
                    self._answered(tally)
                except MCPError as exc:
                    tally.failed.append(f"MCPError {exc.error.code}: {exc.error.message}")
                except httpx2.HTTPError as exc:
                    tally.failed.append(f"{type(exc).__name__}: {exc}")
                if first:
                    first = False
                    self._warmed()
                await trio.sleep(0.02)

    async def _session(self, tally: Tally) -> None:
        first = True
        while not self.stop.is_set():
            # One handshake-era session until it ends with 404; then a new one.
            with contextlib.suppress(Exception):  # the goodbye to a dead session may fail
                async with client(self.cluster, "legacy") as c:
                    assert c.protocol_version == "2025-11-25"
                    tally.sessions += 1
                    while not self.stop.is_set():
                        try:
                            answer = await c.call_tool("alpha__echo", {"text": "y"})
                            assert text(answer) == "y"
                            self._answered(tally)
                        except MCPError as exc:
                            tally.failed.append(f"MCPError {exc.error.code}: {exc.error.message}")
                            break
                        except Exception as exc:
                            tally.failed.append(f"{type(exc).__name__}: {exc}")
                            break
                        if first:
                            first = False
                            self._warmed()
                        await trio.sleep(0.02)


async def _steady(load: Load, seconds: float) -> None:
    """Let the load make ``20 * seconds`` more calls (a span of load, not a synchronization)."""
    target = load.calls + int(seconds * 20)
    with trio.fail_after(120):
        while load.calls < target:
            await load.progress.wait()


async def _poll(probe: Any, what: str) -> None:
    """Until `probe()` (a look at another process, in a thread) is true; 120 s at most."""
    with trio.fail_after(120):
        while True:
            if await trio.to_thread.run_sync(probe):
                return
            await trio.sleep(0.1)


async def _ready(cluster: Cluster, index: int) -> None:
    await _poll(cluster.replicas[index].ready, f"replica {index} ready")


# Known to fail on main since the merges of 2026-12-08 (the stateless front,
# sessions, the SDK-free upstream): a rolling restart now loses stateless-era
# calls ("Server returned an error response", "Server disconnected"). Kept
# running and reported (not strict) until that is found and fixed.
@pytest.mark.xfail(
    strict=False, reason="a rolling restart loses stateless-era calls since the 2026-12-08 merges"
)
@pytest.mark.timeout(900)
async def test_a_rolling_restart_and_a_sigkill_under_load(cluster: Cluster) -> None:
    load = Load(cluster)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load.run)
        with trio.fail_after(120):
            await load.warm.wait()
        await _steady(load, 2)

        # Rolling restart, one replica at a time, as a Deployment rolls: the
        # pod leaves the endpoints, gets SIGTERM (calls in flight finish),
        # its successor starts and rejoins once /readyz says ready.
        for index, replica in enumerate(cluster.replicas):
            await trio.to_thread.run_sync(cluster.take_out, index)
            await trio.to_thread.run_sync(replica.terminate)
            await _steady(load, 1)  # the others serve meanwhile
            await trio.to_thread.run_sync(replica.start)
            await _ready(cluster, index)
            await trio.to_thread.run_sync(cluster.put_back, index)
            await _steady(load, 1)
        restarted = {
            "stateless_failed": [f for t in load.stateless for f in t.failed],
            "sessions_failed": [f for t in load.sessions for f in t.failed],
        }
        # No stateless-era call lost; every session that ended, ended with 404.
        assert restarted["stateless_failed"] == [], restarted
        odd = [f for f in restarted["sessions_failed"] if "Session not found" not in f]
        assert not odd, odd
        assert restarted["sessions_failed"], "no session was on a restarted replica?"
        # ... and each went on with a new session, which works: no failure since
        # (counted once every client has called again after the last restart,
        # so a session that learns of it late is counted with the others).
        await _steady(load, 2)
        ended = [len(t.failed) for t in load.sessions]
        await _steady(load, 2)
        for tally, n in zip(load.sessions, ended, strict=True):
            assert len(tally.failed) == n and tally.sessions == 1 + n, tally
        ok_before_kill = [t.ok for t in load.stateless]

        # SIGKILL: a stateless client loses at most its one call in flight there.
        failed_before = [len(t.failed) for t in load.stateless]
        # nginx finds out by itself (a refused connection: the next replica);
        # the platform marks the pod unready, then restarts it.
        await trio.to_thread.run_sync(cluster.replicas[1].kill)
        await _steady(load, 3)
        await trio.to_thread.run_sync(cluster.take_out, 1)
        lost = [len(t.failed) - n for t, n in zip(load.stateless, failed_before, strict=True)]
        assert all(n <= 1 for n in lost), [t.failed for t in load.stateless]
        assert all(t.ok > n for t, n in zip(load.stateless, ok_before_kill, strict=True))
        await trio.to_thread.run_sync(cluster.replicas[1].start)
        await _ready(cluster, 1)
        await trio.to_thread.run_sync(cluster.put_back, 1)
        await _steady(load, 1)
        load.stop.set()
    total = sum(t.ok for t in load.stateless + load.sessions)
    print(
        f"\nreplicas: {total} calls; stateless lost {sum(lost)} to SIGKILL; "
        f"sessions ended by restarts {len(restarted['sessions_failed'])}"
    )


@pytest.fixture
def oauth_cluster() -> Iterator[tuple[Cluster, int]]:
    port = free_port()
    servers = {"g": {"url": f"http://127.0.0.1:{port}/mcp", "auth": "oauth"}}
    cluster = Cluster(servers)
    with remote(port, "--token-ttl", "30", script=OAUTHSERVER):
        try:
            cluster.start()
            yield cluster, port
        finally:
            problems = cluster.stop()
            assert not problems, problems


def _row(home: McpHome) -> dict[str, Any]:
    rows = json.loads(home.cli("mcp", "ps", "--json").stdout)["servers"]
    found: dict[str, Any] = rows[0]
    return found


@pytest.mark.timeout(900)
async def test_150_clients_on_3_replicas_past_expiry_make_one_refresh(
    oauth_cluster: tuple[Cluster, int],
) -> None:
    cluster, _ = oauth_cluster
    done = await trio.to_thread.run_sync(login, cluster.replicas[0].home, "g")
    assert done.returncode == 0, done
    for replica in cluster.replicas:  # the others take the login from the store
        await _poll(lambda home=replica.home: _row(home)["state"] == "ready", "logged in")
    # 50 stateless-era clients on each replica, connected before the expiry;
    # they all call once it has passed.
    connected = 0
    all_connected = trio.Event()
    expired = trio.Event()
    answers: list[str] = []
    errors: list[str] = []

    async def one(url: str) -> None:
        nonlocal connected
        try:
            async with client(cluster, "auto", url) as c:
                connected += 1
                if connected == 150:
                    all_connected.set()
                await expired.wait()
                answers.append(text(await c.call_tool("g__echo", {"text": "past expiry"})))
        except Exception as exc:
            while isinstance(exc, BaseExceptionGroup):
                exc = exc.exceptions[0]
            errors.append(f"{type(exc).__name__}: {exc}")
            all_connected.set()

    async with trio.open_nursery() as nursery:
        for replica in cluster.replicas:
            for _ in range(50):
                nursery.start_soon(one, f"{replica.url}/mcp")
        with trio.fail_after(300):
            await all_connected.wait()
        assert not errors, errors[:5]
        async with client(cluster, "auto") as probe:
            stats = json.loads(text(await probe.call_tool("g__stats", {})))
        record = cluster.redis_record("bicameral:oauth:g")
        # Until the access token has expired: a fact waited for, not a margin.
        await trio.sleep(max(0.0, record["expires_at"] - time.time()) + 0.1)
        assert time.time() > record["expires_at"]
        expired.set()
    assert not errors, errors[:5]
    assert answers == ["past expiry"] * 150
    async with client(cluster, "auto") as probe:
        after = json.loads(text(await probe.call_tool("g__stats", {})))
    assert after["refresh_token"] == stats["refresh_token"] + 1, (stats, after)
    assert after["authorization_code"] == stats["authorization_code"]
