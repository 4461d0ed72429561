"""AsyncClient (under Trio and asyncio) and BlockingClient against the real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

from bicameral.protocol import AsyncClient, BlockingClient, RPCError
from tests.protocol.conftest import TOKEN, Methods


async def test_async_client_round_trip(server: str) -> None:
    async with await AsyncClient.connect_unix(server) as client:
        assert await client.call("echo", {"a": 1}) == {"a": 1}
        assert await client.call("echo") is None


async def test_async_client_raises_rpc_errors(server: str) -> None:
    async with await AsyncClient.connect_unix(server) as client:
        with pytest.raises(RPCError) as info:
            await client.call("invalid")
        assert (info.value.code, info.value.message, info.value.data) == (
            -32602,
            "invalid params",
            {"field": "x"},
        )
        with pytest.raises(RPCError) as info:
            await client.call("no.such.method")
        assert info.value.code == -32601
        assert await client.call("echo", [1]) == [1]


async def test_async_client_matches_concurrent_calls_by_id(server: str, methods: Methods) -> None:
    results: dict[str, Any] = {}
    async with await AsyncClient.connect_unix(server) as client:

        async def call(key: str, method: str, params: Any) -> None:
            results[key] = await client.call(method, params)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "slow", "wait", {"key": "slow"})
            for i in range(20):
                nursery.start_soon(call, f"fast{i}", "echo", [i])
            while not methods.started:
                await methods.started_changed.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert len(results) == 20  # every fast call done, the slow one waiting
            methods.gate("slow").set()
        assert results["slow"] == "slow"
        assert all(results[f"fast{i}"] == [i] for i in range(20))


async def test_async_client_skips_server_notifications(server: str) -> None:
    async with await AsyncClient.connect_unix(server) as client:
        assert await client.call("notify_me") == "sent"
        await client.notify("echo", [1])
        assert await client.call("echo", [2]) == [2]


async def test_async_client_call_after_server_closes_raises(
    start_unix: Any, nursery: trio.Nursery
) -> None:
    from bicameral.protocol import Limits

    path = await start_unix(Limits(max_frame=100))
    client = await AsyncClient.connect_unix(path)
    with pytest.raises(RPCError) as info:
        await client.call("echo", ["x" * 200])
    assert info.value.code == -32600
    with pytest.raises(ConnectionError):
        await client.call("echo", [1])
    await client.aclose()


async def test_async_client_cancelled_call_leaves_the_client_usable(
    server: str, methods: Methods
) -> None:
    async with await AsyncClient.connect_unix(server) as client:
        with trio.move_on_after(0.05):
            await client.call("wait", {"key": "never"})
        assert await client.call("echo", [1]) == [1]


async def test_async_client_tcp_attaches_with_the_token(tcp_server: str) -> None:
    async with await AsyncClient.connect_tcp(tcp_server, TOKEN) as client:
        assert await client.call("echo", [1]) == [1]
    with pytest.raises(RPCError) as info:
        await AsyncClient.connect_tcp(tcp_server, "wrong")
    assert info.value.code == -32001


async def test_async_client_under_asyncio(server: str) -> None:
    async def main() -> list[Any]:
        async with await AsyncClient.connect_unix(server) as client:
            return list(await asyncio.gather(*(client.call("echo", [i]) for i in range(10))))

    results = await trio.to_thread.run_sync(asyncio.run, main())
    assert results == [[i] for i in range(10)]


async def test_blocking_client_round_trip_and_errors(server: str) -> None:
    def work() -> None:
        with BlockingClient.connect_unix(server) as client:
            assert client.call("echo", {"a": [1]}) == {"a": [1]}
            client.notify("echo", [0])
            assert client.call("notify_me") == "sent"
            with pytest.raises(RPCError) as info:
                client.call("boom")
            assert info.value.code == -32603
            assert client.call("echo", [2], timeout=None) == [2]

    await trio.to_thread.run_sync(work)


async def test_blocking_client_times_out(server: str, methods: Methods) -> None:
    def work() -> None:
        with BlockingClient.connect_unix(server) as client, pytest.raises(TimeoutError):
            client.call("wait", {"key": "never"}, timeout=0.05)

    await trio.to_thread.run_sync(work)


async def test_blocking_client_tcp(tcp_server: str) -> None:
    def work() -> None:
        with BlockingClient.connect_tcp(tcp_server, TOKEN) as client:
            assert client.call("echo", [1]) == [1]
        with pytest.raises(RPCError) as info:
            BlockingClient.connect_tcp(tcp_server, "nope")
        assert info.value.code == -32001

    await trio.to_thread.run_sync(work)


def test_blocking_client_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from bicameral.protocol import BlockingClient, RPCError\n"
        "heavy = [m for m in ('trio', 'anyio', 'orjson') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_blocking_client_reports_a_closed_connection(start_unix: Any) -> None:
    from bicameral.protocol import Limits

    path = await start_unix(Limits(max_frame=100))

    def work() -> None:
        with BlockingClient.connect_unix(path) as client:
            with pytest.raises(RPCError) as info:
                client.call("echo", ["x" * 200])
            assert info.value.code == -32600
            with pytest.raises((ConnectionError, OSError)):
                client.call("echo", [1])

    await trio.to_thread.run_sync(work)
