"""Requests answered in line (by the poller or the reader): bounds, blocked writes, failures.

Every test here runs in both modes (the ``poller_mode`` fixture).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from bicameral.protocol import Limits, serve_unix
from bicameral.protocol._poller import INLINE_BUDGET
from bicameral.protocol._requests import RequestRunner as Connection
from tests.protocol.conftest import Methods, Raw, StartUnix

Connect = Callable[[str], Awaitable[Raw]]


def _frame(method: str, params: Any, msg_id: Any) -> bytes:
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


async def test_a_pipelined_flood_does_not_starve_another_client(
    server: str, connect: Connect, methods: Methods
) -> None:
    flooder = await connect(server)
    other = await connect(server)
    flood = 20 * INLINE_BUDGET
    await flooder.send(b"".join(_frame("mark", [f"f{i}"], i) for i in range(flood)))
    await other.send(_frame("mark", ["other"], 1))
    assert (await other.recv())["result"] == "other"
    for i in range(flood):
        assert (await flooder.recv())["id"] == i
    # At most a few budgets of the flood were answered before the other
    # client's single request, not the whole flood.
    assert methods.marks.index("other") <= 3 * INLINE_BUDGET


async def _companion(path: str, connect: Connect) -> Raw:
    """A second, idle connection: a lone one waits on its own socket, not in the poller."""
    raw = await connect(path)
    assert (await raw.call("echo", [0]))["result"] == [0]
    return raw


async def test_responses_the_socket_cannot_take_at_once_are_written_whole_and_in_order(
    server: str, connect: Connect
) -> None:
    await _companion(server, connect)
    raw = await connect(server)
    size = 8192
    count = 300  # 2.4 MiB of answers to small requests: far more than the socket holds
    await raw.send(b"".join(_frame("blob", [size], i) for i in range(count)))
    # The server fills the socket and waits for it to drain before we read.
    await trio.testing.wait_all_tasks_blocked()
    for i in range(count):
        assert await raw.recv() == {"jsonrpc": "2.0", "id": i, "result": "b" * size}
    assert (await raw.call("echo", ["after"], msg_id="after"))["result"] == ["after"]


async def test_inline_answers_wait_for_a_task_that_is_writing(
    server: str, connect: Connect
) -> None:
    await _companion(server, connect)
    raw = await connect(server)
    # "huge" runs in a task that blocks writing 4 MiB, holding the write
    # lock, while the requests behind it are answered in line.
    size = 4 << 20
    marks = 5 * INLINE_BUDGET
    frames = [_frame("huge", [size], "huge")] + [_frame("mark", [i], i) for i in range(marks)]
    await raw.send(b"".join(frames))
    await trio.testing.wait_all_tasks_blocked()
    ids = set()
    for _ in range(len(frames)):
        reply = await raw.recv()  # each line whole, or json.loads fails
        ids.add(reply["id"])
        if reply["id"] == "huge":
            assert reply["result"] == "h" * size
    assert ids == {"huge"} | set(range(marks))


async def test_a_client_that_hangs_up_while_its_reader_waits_leaves_the_server_idle(
    start_unix: StartUnix, connect: Connect, methods: Methods
) -> None:
    path = await start_unix(Limits(max_in_flight=1))
    await _companion(path, connect)
    raw = await connect(path)
    await raw.send(_frame("wait", {"key": "a"}, 1) + _frame("wait", {"key": "b"}, 2))
    while len(methods.started) < 1:
        await methods.started_changed.wait()
    await raw.aclose()
    # The reader is waiting for a slot, so the hung-up socket must not be
    # polled every round: otherwise the server never goes idle.
    with trio.fail_after(5):
        await trio.testing.wait_all_tasks_blocked()
    methods.gate("a").set()
    methods.gate("b").set()
    other = await connect(path)
    assert (await other.call("echo", [1]))["result"] == [1]


async def test_a_failure_in_the_poller_costs_only_its_connection(
    server: str,
    connect: Connect,
    poller_mode: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if poller_mode == "direct":
        pytest.skip("the reader never calls _answer_now")
    original = Connection._answer_now

    def answer_now(self: Connection, frame: bytes) -> Any:
        if b"explode" in frame:
            raise RuntimeError("a bug in the inline path")
        return original(self, frame)

    monkeypatch.setattr(Connection, "_answer_now", answer_now)
    other = await connect(server)  # a lone connection does not use the poller
    assert (await other.call("echo", [1]))["result"] == [1]
    victim = await connect(server)
    assert (await victim.call("echo", [1]))["result"] == [1]
    await victim.send(_frame("mark", ["explode"], 1))
    with trio.fail_after(5):
        assert await victim.closed() == b""
    assert "connection handler failed" in caplog.text
    assert (await other.call("echo", [2]))["result"] == [2]


async def test_cancelling_the_server_stops_busy_and_idle_connections_promptly(
    sockdir: str, methods: Methods, connect: Connect
) -> None:
    path = os.path.join(sockdir, "c.sock")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_unix, path, methods.dispatcher()))
            idle = await connect(path)
            assert (await idle.call("echo", [1]))["result"] == [1]
            busy = await connect(path)
            await busy.send(b"".join(_frame("mark", [i], i) for i in range(10 * INLINE_BUDGET)))
            await busy.recv()  # the flood is being answered
            nursery.cancel_scope.cancel()
            cancelled_at = trio.current_time()
        assert trio.current_time() - cancelled_at < 1.0
    assert await idle.closed() == b""
