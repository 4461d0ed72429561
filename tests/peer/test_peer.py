"""`Peer`: the one JSON-RPC peer every MCP stream runs on.

Two peers over a socketpair, or one peer and a raw socket playing a hostile
other side. Timeouts run on the autojump clock: they are exact, not margins.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from bicameral.protocol import (
    EOF,
    INVALID_REQUEST,
    PARSE_ERROR,
    TOO_LARGE,
    FdReader,
    FdWriter,
    InputBudget,
    Peer,
    PeerClosed,
    RPCError,
    Wire,
)


class Recorder:
    """A `PeerHandler` that records what arrives and answers ``echo``, ``slow``, ``fail``."""

    def __init__(self, in_line: frozenset[str] = frozenset()) -> None:
        self.in_line_methods = in_line
        self.requests: list[tuple[Any, str, Any]] = []
        self.notes: list[tuple[str, Any]] = []
        self.handled: list[tuple[str, Any]] = []
        self.release = trio.Event()
        self.cancelled: list[Any] = []
        self.cancel_seen = trio.Event()
        self.running = 0
        self.started = trio.Event()
        self.peer: Peer | None = None

    def in_line(self, method: str) -> bool:
        return method in self.in_line_methods

    async def on_request(self, request_id: Any, method: str, params: dict[str, Any] | None) -> Any:
        self.requests.append((request_id, method, params))
        if method == "echo":
            return params
        if method == "fail":
            raise RPCError(-32042, "it failed", {"why": "asked to"})
        if method == "crash":
            raise ValueError("a bug")
        if method == "progress":
            assert self.peer is not None
            token = (params or {}).get("_meta", {}).get("progressToken")
            for i in range(3):
                await self.peer.notify(
                    "notifications/progress", {"progressToken": token, "progress": i}
                )
            return {"done": True}
        if method == "slow":
            self.running += 1
            self.started.set()
            try:
                await self.release.wait()
            except trio.Cancelled:
                self.cancelled.append(request_id)
                self.cancel_seen.set()
                raise
            finally:
                self.running -= 1
            return {"slow": request_id}
        raise RPCError(-32601, f"method not found: {method}")

    def note(self, method: str, params: dict[str, Any] | None) -> bool:
        self.notes.append((method, params))
        return method == "consumed"

    async def on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        self.handled.append((method, params))
        if method == "block":
            await trio.sleep_forever()


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _wire(sock: socket.socket) -> Wire:
    fd = sock.fileno()
    return Wire(FdReader(fd), FdWriter(fd))


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[tuple[Peer, Recorder, Peer, Recorder]]:
    a_sock, b_sock = _socketpair()
    a_handler, b_handler = Recorder(), Recorder()
    a = Peer(_wire(a_sock), a_handler, name="a", max_frame=1 << 20, answers_malformed=True)
    b = Peer(_wire(b_sock), b_handler, name="b", max_frame=1 << 20)
    a_handler.peer, b_handler.peer = a, b
    await nursery.start(a.run)
    await nursery.start(b.run)
    yield a, a_handler, b, b_handler
    a_sock.close()
    b_sock.close()


class Raw:
    """The other side as raw lines, to send what no well-behaved peer would."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.buffer = b""

    async def send(self, obj: Any) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        await self.stream.send_all(data)

    async def receive(self) -> Any:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


async def _serve_raw(
    nursery: trio.Nursery, handler: Recorder, **settings: Any
) -> tuple[Peer, Raw, socket.socket]:
    ours, theirs = _socketpair()
    settings.setdefault("max_frame", 1 << 20)
    peer = Peer(_wire(ours), handler, name="raw", **settings)
    handler.peer = peer
    await nursery.start(peer.run)
    return peer, Raw(theirs), ours


async def test_requests_both_ways_with_ids_of_its_own(pair: Any) -> None:
    a, _, b, b_handler = pair
    assert await a.request("echo", {"x": 1}) == {"x": 1}
    assert await b.request("echo", {"y": 2}) == {"y": 2}
    # Each side numbers its own requests; many callers share the stream.
    results = []

    async def call(i: int) -> None:
        results.append(await a.request("echo", {"i": i}))

    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(call, i)
    assert sorted(r["i"] for r in results) == list(range(20))
    assert len({rid for rid, _, _ in b_handler.requests}) == len(b_handler.requests)


async def test_an_error_answer_raises_rpc_error_with_code_message_and_data(pair: Any) -> None:
    a, _, _, _ = pair
    with pytest.raises(RPCError) as info:
        await a.request("fail")
    assert (info.value.code, info.value.message, info.value.data) == (
        -32042,
        "it failed",
        {"why": "asked to"},
    )
    with pytest.raises(RPCError) as info:
        await a.request("crash")
    assert info.value.code == -32603 and "a bug" not in info.value.message


async def test_progress_is_delivered_in_order_and_before_the_response(pair: Any) -> None:
    a, _, _, _ = pair
    seen: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await trio.sleep(0.01)  # a slow consumer: the response must still wait for it
        seen.append(progress)

    result = await a.request("progress", {}, on_progress=on_progress)
    seen.append(result)
    assert seen == [0.0, 1.0, 2.0, {"done": True}]


async def test_a_caller_that_stops_waiting_cancels_the_request_on_the_other_side(
    pair: Any, autojump_clock: trio.abc.Clock
) -> None:
    a, _, _, b_handler = pair
    with trio.move_on_after(1):
        await a.request("slow")
    await trio.testing.wait_all_tasks_blocked()
    await b_handler.cancel_seen.wait()
    assert b_handler.running == 0


async def test_notes_in_receive_order_and_the_rest_in_tasks(pair: Any) -> None:
    a, _, _, b_handler = pair
    await a.notify("consumed", {"n": 1})
    await a.notify("other", {"n": 2})
    await a.request("echo")  # everything before it has been read
    await trio.testing.wait_all_tasks_blocked()
    assert b_handler.notes == [("consumed", {"n": 1}), ("other", {"n": 2})]
    assert b_handler.handled == [("other", {"n": 2})]


async def test_in_line_requests_keep_their_order_and_close_answers_them_all(
    nursery: trio.Nursery,
) -> None:
    handler = Recorder(in_line=frozenset({"echo"}))
    peer, raw, ours = await _serve_raw(nursery, handler, answers_malformed=True, drain=10)
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "echo", "params": {"i": i}}).encode()
        + b"\n"
        for i in range(50)
    )
    await raw.send(lines)
    await raw.stream.send_eof()
    answers = [await raw.receive() for _ in range(50)]
    assert [m["id"] for m in answers] == list(range(50))
    await peer.wait_closed()
    assert peer.end == EOF
    ours.close()


async def test_requests_running_at_end_of_input_are_answered_within_the_drain(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler, drain=10)
    await raw.send({"jsonrpc": "2.0", "id": 7, "method": "slow"})
    await handler.started.wait()
    await raw.stream.send_eof()
    await trio.sleep(5)  # well inside the drain
    handler.release.set()
    assert await raw.receive() == {"jsonrpc": "2.0", "id": 7, "result": {"slow": 7}}
    ours.close()


async def test_cancelled_notification_cancels_the_task_and_no_answer_is_sent(
    nursery: trio.Nursery,
) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler)
    await raw.send({"jsonrpc": "2.0", "id": "x", "method": "slow"})
    await handler.started.wait()
    await raw.send(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "x"}}
    )
    await raw.send({"jsonrpc": "2.0", "id": "y", "method": "echo", "params": {}})
    assert await raw.receive() == {"jsonrpc": "2.0", "id": "y", "result": {}}
    assert handler.cancelled == ["x"]
    ours.close()


async def test_malformed_input_is_answered_and_the_session_goes_on(nursery: trio.Nursery) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler, answers_malformed=True)
    await raw.send(b"this is not json\n")
    assert (await raw.receive())["error"]["code"] == PARSE_ERROR
    await raw.send(b"[1, 2]\n")  # a batch of two invalid requests: two answers
    assert (await raw.receive())["error"]["code"] == INVALID_REQUEST
    assert (await raw.receive())["error"]["code"] == INVALID_REQUEST
    await raw.send({"jsonrpc": "2.0", "id": [1], "method": "echo"})
    assert (await raw.receive())["error"]["code"] == INVALID_REQUEST
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]})
    assert (await raw.receive())["error"]["code"] == -32602
    await raw.send({"jsonrpc": "2.0", "id": [1], "result": {}})  # an answer nobody asked for
    await raw.send({"jsonrpc": "2.0", "id": 2, "method": "echo", "params": {"ok": True}})
    assert await raw.receive() == {"jsonrpc": "2.0", "id": 2, "result": {"ok": True}}
    ours.close()


async def test_a_peer_that_does_not_serve_only_logs_malformed_input(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler)
    await raw.send(b"junk\n")
    await raw.send({"jsonrpc": "2.0", "id": 3, "method": "echo", "params": {}})
    assert await raw.receive() == {"jsonrpc": "2.0", "id": 3, "result": {}}
    assert "raw wrote a line that is not JSON" in caplog.text
    ours.close()


async def test_a_line_over_max_frame_ends_the_stream(nursery: trio.Nursery) -> None:
    handler = Recorder()
    peer, raw, ours = await _serve_raw(nursery, handler, max_frame=1000, answers_malformed=True)
    await raw.send(b"x" * 5000)
    answer = await raw.receive()
    assert answer["error"] == {"code": INVALID_REQUEST, "message": "message too long"}
    await peer.wait_closed()
    assert peer.end == TOO_LARGE
    ours.close()


async def test_unfinished_input_counts_against_the_shared_budget(nursery: trio.Nursery) -> None:
    budget = InputBudget(100_000)
    handler = Recorder()
    peer, raw, ours = await _serve_raw(
        nursery, handler, budget=budget, answers_malformed=True, max_frame=1 << 20
    )
    await raw.send(b"x" * 150_000)
    answer = await raw.receive()
    assert "too much unfinished input" in answer["error"]["message"]
    await peer.wait_closed()
    assert budget.used == 0
    ours.close()


async def test_past_max_inbound_a_request_is_refused_when_asked(nursery: trio.Nursery) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler, max_inbound=2, refuse_when_busy=True)
    for i in range(3):
        await raw.send({"jsonrpc": "2.0", "id": i, "method": "slow"})
    refusal = await raw.receive()
    assert refusal["id"] == 2 and "too many requests" in refusal["error"]["message"]
    assert handler.running == 2
    ours.close()


async def test_past_max_inbound_the_reader_waits(nursery: trio.Nursery) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler, max_inbound=2)
    for i in range(3):
        await raw.send({"jsonrpc": "2.0", "id": i, "method": "slow"})
    await raw.send({"jsonrpc": "2.0", "id": 9, "method": "echo", "params": {}})
    await trio.testing.wait_all_tasks_blocked()
    assert handler.running == 2  # the third is not read yet, nor anything after it
    handler.release.set()
    ids = {(await raw.receive())["id"] for _ in range(4)}
    assert ids == {0, 1, 2, 9}
    ours.close()


async def test_a_notification_flood_beyond_the_bound_is_dropped(nursery: trio.Nursery) -> None:
    handler = Recorder()
    _, raw, ours = await _serve_raw(nursery, handler, max_notify_tasks=5)
    await raw.send(b"".join(b'{"jsonrpc":"2.0","method":"block"}\n' for _ in range(50)))
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {}})
    assert await raw.receive() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert len(handler.handled) == 5
    ours.close()


async def test_a_reader_that_never_reads_is_cut_off_after_the_send_timeout(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    handler = Recorder()
    peer, _raw, ours = await _serve_raw(nursery, handler, send_timeout=60)
    big = {"blob": "x" * 100_000}
    for _ in range(20):
        peer.notify_soon("notifications/message", big)
    start = trio.current_time()
    await peer.wait_closed()
    assert 60 <= trio.current_time() - start <= 62
    with pytest.raises(PeerClosed):
        await peer.request("echo")
    ours.close()


async def test_pending_requests_fail_with_peer_closed_when_the_stream_ends(
    nursery: trio.Nursery,
) -> None:
    handler = Recorder()
    peer, raw, ours = await _serve_raw(nursery, handler)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await peer.request("anything")
        except PeerClosed as exc:
            outcome.append(exc)

    async with trio.open_nursery() as n:
        n.start_soon(call)
        assert (await raw.receive())["method"] == "anything"
        await raw.stream.aclose()
    assert len(outcome) == 1 and outcome[0].code == -32000
    ours.close()
