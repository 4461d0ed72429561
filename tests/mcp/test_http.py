"""The HTTP listener: MCP clients over streamable HTTP, both protocol eras, guards, probes.

A real daemon (``daemon start --http 127.0.0.1:0`` or ``[daemon.http]``)
in a short temporary directory; the clients are the official SDK's
streamable HTTP client (``mcp.Client`` in ``legacy`` and ``auto`` mode) and
plain ``httpx2`` for the guards.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp._support import INITIALIZE, text, wait_until
from tests.mcp.conftest import BICAMERAL, McpHome


def post_headers(key: str | None) -> dict[str, str]:
    """What a POST to the listener carries (the token `key`, when given)."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    return {**headers, "Authorization": f"Bearer {key}"} if key else headers


def start(home: McpHome, *, http: str = "127.0.0.1:0") -> str:
    """Start the daemon with the listener on; its base URL."""
    done = home.cli("daemon", "start", "--http", http)
    assert done.returncode == 0, done.stderr
    descriptor = home.descriptor()
    assert descriptor is not None
    return str(descriptor["http_url"])


def token(home: McpHome) -> str:
    path = home.path / "http.token"
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


@asynccontextmanager
async def client(
    url: str, key: str | None, mode: str = "legacy", *, terminate: bool = True
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=terminate)
        async with Client(transport, mode=mode) as mcp_client:  # type: ignore[arg-type]
            yield mcp_client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_over_http_in_both_eras_on_both_paths(
    mcp_home: McpHome, mode: str
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    base = start(mcp_home)
    key = token(mcp_home)
    era = "2025-11-25" if mode == "legacy" else "2026-07-28"
    async with client(f"{base}/mcp/alpha", key, mode) as one:
        assert one.protocol_version == era
        assert one.server_info is not None and one.server_info.name == "alpha"
        names = [t.name for t in (await one.list_tools()).tools]
        assert "echo" in names
        assert text(await one.call_tool("echo", {"text": "drop-in"})) == "drop-in"
    async with client(f"{base}/mcp", key, mode) as every:
        assert every.protocol_version == era
        assert every.server_info is not None and every.server_info.name == "bicameral"
        names = [t.name for t in (await every.list_tools()).tools]
        assert "alpha__echo" in names and "bicameral__status" in names
        assert text(await every.call_tool("alpha__echo", {"text": "aggregated"})) == "aggregated"


async def test_a_modern_client_through_the_stdio_bridge_negotiates_the_modern_era(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    async with Client(mcp_home.params("alpha")) as modern:  # mode="auto": server/discover
        assert modern.protocol_version == "2026-07-28"
        assert modern.server_info is not None and modern.server_info.name == "alpha"
        assert text(await modern.call_tool("add", {"a": 2, "b": 3})) == "5"
    async with Client(mcp_home.params("alpha"), mode="legacy") as old:
        assert old.protocol_version == "2025-11-25"


async def test_the_guards_token_origin_and_host(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    base = start(mcp_home)
    key = token(mcp_home)
    port = base.rpartition(":")[2]
    accept = post_headers(None)
    signed = post_headers(key)
    async with httpx2.AsyncClient(timeout=30) as http:
        missing = await http.post(f"{base}/mcp", json=INITIALIZE, headers=accept)
        assert missing.status_code == 401
        assert "bearer" in missing.headers["www-authenticate"].lower()
        wrong = await http.post(
            f"{base}/mcp", json=INITIALIZE, headers={**accept, "Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        origin = await http.post(
            f"{base}/mcp",
            json=INITIALIZE,
            headers={**signed, "Origin": "http://evil.example"},
        )
        assert origin.status_code == 403
        host = await http.post(
            f"{base}/mcp",
            json=INITIALIZE,
            headers={**signed, "Host": f"evil.example:{port}"},
        )
        assert host.status_code == 403
        ok = await http.post(
            f"{base}/mcp/alpha",
            json=INITIALIZE,
            headers={**signed, "Origin": f"http://localhost:{port}"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["mcp-session-id"]
        unknown = await http.post(f"{base}/mcp/nosuch", json=INITIALIZE, headers=signed)
        assert unknown.status_code == 404 and "alpha" in unknown.text
        # A session is bound to the path that opened it.
        other = await http.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
            headers={**signed, "Mcp-Session-Id": ok.headers["mcp-session-id"]},
        )
        assert other.status_code == 404


async def test_probes_and_metrics_name_every_server(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.light_server("alpha"), "beta": mcp_home.light_server("beta")}
    )
    base = start(mcp_home)
    key = token(mcp_home)
    async with client(f"{base}/mcp/alpha", key) as one:
        await one.call_tool("echo", {"text": "counted"})
    async with httpx2.AsyncClient(timeout=30) as http:
        assert (await http.get(f"{base}/healthz")).status_code == 200
        # Ready once both servers have made their first start (beta too).
        with trio.fail_after(30):
            while True:
                if (await http.get(f"{base}/readyz")).text.strip() == "ready":
                    break
                await trio.sleep(0.05)
        assert (await http.get(f"{base}/metrics")).status_code == 401
        metrics = (
            await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"})
        ).text
    for server in ("alpha", "beta"):
        assert f'bicameral_mcp_server_up{{server="{server}"}}' in metrics
        assert f'bicameral_mcp_server_restarts_total{{server="{server}"}}' in metrics
    assert 'bicameral_mcp_requests_total{method="tools/call",server="alpha"} 1.0' in metrics
    assert "bicameral_mcp_request_duration_seconds_bucket" in metrics
    assert "bicameral_process_resident_memory_bytes" in metrics
    assert "bicameral_process_open_fds" in metrics


async def test_sigterm_drains_an_in_flight_call_over_http(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    base = start(mcp_home)
    key = token(mcp_home)
    pid = mcp_home.daemon_pid()
    progressed = trio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progressed.set()

    result: dict[str, Any] = {}

    async def call(one: Client) -> None:
        await one.list_tools()  # the SDK checks a result against the tool's schema: known now
        answer = await one.call_tool(
            "slow", {"steps": 4, "delay": 0.25}, progress_callback=on_progress
        )
        result["text"] = text(answer)

    # The client's own goodbye at the end finds the daemon gone: only the
    # call's answer matters here.
    with contextlib.suppress(Exception):
        async with (
            client(f"{base}/mcp/alpha", key, terminate=False) as one,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(call, one)
            await progressed.wait()
            os.kill(pid, signal.SIGTERM)
    assert result.get("text") == "done after 4 steps"
    # The daemon then exits on its own; its descriptor goes with it.
    status = await trio.to_thread.run_sync(mcp_home.cli, "daemon", "status")
    assert status.returncode == 3, status.stdout


def test_a_non_loopback_address_needs_allow_remote(mcp_home: McpHome) -> None:
    (mcp_home.path / "config.toml").write_text('[daemon.http]\nlisten = "0.0.0.0:0"\n')
    done = mcp_home.cli("daemon", "start")
    assert done.returncode == 1
    assert "allow_remote" in done.stderr and "Traceback" not in done.stderr
    assert mcp_home.descriptor() is None
    bad = mcp_home.cli("daemon", "start", "--http", "nonsense")
    assert bad.returncode == 1 and "HOST:PORT" in bad.stderr
    assert not (mcp_home.path / "daemon.sock").exists()


def test_mcp_http_prints_the_url_and_header(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    off = mcp_home.cli("mcp", "http")
    assert off.returncode == 1 and "[daemon.http]" in off.stderr
    base = start(mcp_home)
    shown = subprocess.run(
        [BICAMERAL, "--home", str(mcp_home.path), "mcp", "http", "--server", "alpha", "--json"],
        capture_output=True,
        text=True,
        env=mcp_home.env,
        check=True,
    )
    result = json.loads(shown.stdout)
    assert result["url"] == f"{base}/mcp/alpha"
    assert result["header"] == f"Authorization: Bearer {token(mcp_home)}"
    assert result["claude"].startswith(f"claude mcp add --transport http alpha {base}/mcp/alpha")


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_modern_client_answers_its_servers_sampling_through_input_required(
    mcp_home: McpHome, transport: str
) -> None:
    """The server (handshake era) asks for sampling; the 2026-07-28 client gets a round."""
    import mcp_types as types

    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        asked.append(content.text)
        reply = types.TextContent(type="text", text=f"sampled {content.text}")
        return types.CreateMessageResult(role="assistant", model="m", content=reply)

    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            opened: Any = Client(mcp_home.params("alpha"), sampling_callback=sampling)
        else:
            base = start(mcp_home)
            auth = {"Authorization": f"Bearer {token(mcp_home)}"}
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=auth))
            opened = Client(
                streamable_http_client(f"{base}/mcp/alpha", http_client=http),
                sampling_callback=sampling,
            )
        modern = await stack.enter_async_context(opened)
        assert modern.protocol_version == "2026-07-28"
        first = await modern.call_tool("sample", {"prompt": "one"})
        second = await modern.call_tool("sample", {"prompt": "two"})
    assert (text(first), text(second)) == ("sampled one", "sampled two")
    assert asked == ["one", "two"]


async def test_bad_http_requests_get_clear_statuses_and_the_session_lives_on(
    mcp_home: McpHome,
) -> None:
    limits = "[daemon.limits]\nmax_frame = 65536\nmax_buffered = 40000\n"
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")}, daemon=limits)
    base = start(mcp_home)
    url = f"{base}/mcp/alpha"
    post = post_headers(token(mcp_home))
    async with httpx2.AsyncClient(timeout=30) as http:
        opened = await http.post(url, json=INITIALIZE, headers=post)
        assert opened.status_code == 200
        assert opened.headers["content-type"] == "application/json"
        session = {**post, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=note, headers=session)).status_code == 202
        cases = [
            (await http.post(url, content=b"{not json", headers=session), 400),
            (await http.post(url, content=b"[1, 2]", headers=session), 400),
            (await http.post(url, content=b"x" * 70000, headers=session), 413),
            # Under max_frame, over what the listener may hold of unfinished bodies:
            (await http.post(url, content=b" " * 50000, headers=session), 503),
            (
                await http.post(url, json=note, headers={**session, "Content-Type": "text/plain"}),
                415,
            ),
            (await http.post(url, json=note, headers={**session, "Accept": "text/html"}), 406),
            (await http.post(url, json={**note, "id": 5, "method": "ping"}, headers=post), 400),
            (await http.put(url, headers=session), 405),
            (await http.post(url, json={**note, "id": {"x": 1}}, headers=session), 400),
            (await http.post(url, json={**note, "id": True}, headers=session), 400),
            (await http.get(url, headers={**session, "Accept": "application/json"}), 406),
            (
                await http.post(
                    url, json=note, headers={**session, "MCP-Protocol-Version": "1999-01-01"}
                ),
                400,
            ),
        ]
        for response, status in cases:
            assert response.status_code == status, (response.request.content[:40], response.text)
            assert "Traceback" not in response.text
        # The session survived all of it.
        ping = await http.post(
            url, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}, headers=session
        )
        assert ping.json() == {"jsonrpc": "2.0", "id": 9, "result": {}}
        # One GET stream per session; DELETE ends the session.
        async with http.stream(
            "GET", url, headers={**session, "Accept": "text/event-stream"}
        ) as one:
            assert one.status_code == 200
            second = await http.get(url, headers={**session, "Accept": "text/event-stream"})
            assert second.status_code == 409
        assert (await http.delete(url, headers=session)).status_code == 200
        gone = await http.post(
            url, json={"jsonrpc": "2.0", "id": 10, "method": "ping"}, headers=session
        )
        assert gone.status_code == 404


def _listener_answers(home: McpHome) -> str:
    descriptor = home.descriptor()
    assert descriptor is not None and descriptor.get("http_url"), descriptor
    url = str(descriptor["http_url"])
    assert httpx2.get(f"{url}/healthz", timeout=10).status_code == 200
    return url


def _server_pid(home: McpHome, name: str) -> int:
    def ready() -> int | None:
        rows = json.loads(home.cli("mcp", "ps", "--json").stdout)["servers"]
        row = next(r for r in rows if r["name"] == name)
        return row["pid"] if row["state"] == "ready" else None

    pid: int = wait_until(ready)
    return pid


def test_start_with_http_adds_the_listener_to_a_running_daemon_without_restarts(
    mcp_home: McpHome,
) -> None:
    """`daemon start --http` against a running daemon adds the listener; no server restarts."""
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    started = mcp_home.cli("daemon", "start")
    assert started.returncode == 0, started.stderr
    daemon_pid = json.loads(started.stdout)["pid"]
    server_pid = _server_pid(mcp_home, "alpha")
    again = mcp_home.cli("daemon", "start", "--http", "127.0.0.1:0")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["status"] == "already-running" and result["pid"] == daemon_pid, result
    assert result["http_url"].startswith("http://127.0.0.1:"), result
    assert _listener_answers(mcp_home) == result["http_url"]
    assert _server_pid(mcp_home, "alpha") == server_pid
    unknown = mcp_home.cli("mcp", "http", "--server", "nosuch")
    assert unknown.returncode == 1 and "nosuch" in unknown.stderr


async def test_a_reload_turns_the_listener_on_moves_it_and_off_without_restarts(
    mcp_home: McpHome,
) -> None:
    """[daemon.http] applies on reload, like the rest of config.toml (no server restarts)."""
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    assert mcp_home.cli("daemon", "start").returncode == 0
    server_pid = _server_pid(mcp_home, "alpha")
    mcp_home.configure(
        {"alpha": mcp_home.light_server("alpha")}, daemon='[daemon.http]\nlisten = "127.0.0.1:0"\n'
    )
    reloaded = mcp_home.cli("daemon", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    url = _listener_answers(mcp_home)
    async with client(f"{url}/mcp/alpha", token(mcp_home)) as http_client:
        assert text(await http_client.call_tool("echo", {"text": "hi"})) == "hi"
    # Another address: the listener moves there.
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mcp_home.configure(
        {"alpha": mcp_home.light_server("alpha")},
        daemon=f'[daemon.http]\nlisten = "127.0.0.1:{port}"\n',
    )
    assert mcp_home.cli("daemon", "reload").returncode == 0
    assert _listener_answers(mcp_home) == f"http://127.0.0.1:{port}"
    # Off again.
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    assert mcp_home.cli("daemon", "reload").returncode == 0
    descriptor = mcp_home.descriptor()
    assert descriptor is not None and not descriptor.get("http_url"), descriptor
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert _server_pid(mcp_home, "alpha") == server_pid


async def test_requests_in_flight_are_bounded_by_max_connections(mcp_home: McpHome) -> None:
    limits = "[daemon.limits]\nmax_connections = 2\n"
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")}, daemon=limits)
    base = start(mcp_home)
    url = f"{base}/mcp/alpha"
    post = post_headers(token(mcp_home))
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with httpx2.AsyncClient(timeout=30) as http:
        sessions = []
        for _ in range(2):
            opened = await http.post(url, json=INITIALIZE, headers=post)
            sessions.append({**post, "Mcp-Session-Id": opened.headers["mcp-session-id"]})
        listen = [{**s, "Accept": "text/event-stream"} for s in sessions]
        async with http.stream("GET", url, headers=listen[0]) as first:
            assert first.status_code == 200
            async with http.stream("GET", url, headers=listen[1]) as second:
                assert second.status_code == 200
                busy = await http.post(url, json=ping, headers=sessions[0])
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        # The streams' ends reach the daemon a moment after the client closes them.
        with trio.fail_after(30):
            for _ in itertools.count():
                answered = await http.post(url, json=ping, headers=sessions[0])
                if answered.status_code != 503:
                    break
                await trio.sleep(0.05)
        assert answered.json()["result"] == {}
