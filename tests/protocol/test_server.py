"""The server as a client sees it on the wire: SPEC §7's rules, one by one."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from bicameral.protocol import Limits
from tests.protocol.conftest import Methods, Raw, StartUnix

Connect = Callable[[str], Awaitable[Raw]]


async def test_request_is_answered_with_its_id(server: str, connect: Connect) -> None:
    raw = await connect(server)
    assert await raw.call("echo", {"a": [1, 2]}, msg_id="abc") == {
        "jsonrpc": "2.0",
        "id": "abc",
        "result": {"a": [1, 2]},
    }


async def test_response_is_compact_json_on_one_line(server: str, connect: Connect) -> None:
    raw = await connect(server)
    await raw.request("echo", [1])
    assert await raw.line() == b'{"jsonrpc":"2.0","id":1,"result":[1]}'


async def test_parse_error_has_null_id_and_keeps_the_connection(
    server: str, connect: Connect
) -> None:
    raw = await connect(server)
    await raw.send(b"{not json\n")
    reply = await raw.recv()
    assert reply["id"] is None
    assert reply["error"]["code"] == -32700
    assert (await raw.call("echo", [5]))["result"] == [5]


@pytest.mark.parametrize(
    ("message", "reply_id"),
    [
        ({"jsonrpc": "1.0", "id": 1, "method": "echo"}, 1),
        ({"id": 1, "method": "echo"}, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "echo"}, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "echo"}, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "echo"}, None),
        ({"jsonrpc": "2.0", "id": 2, "method": 5}, 2),
        ({"jsonrpc": "2.0", "id": 2}, 2),
        ({"jsonrpc": "2.0", "id": 3, "method": "echo", "params": "str"}, 3),
        ({"jsonrpc": "2.0", "id": 3, "method": "echo", "params": 7}, 3),
        ({"jsonrpc": "2.0", "id": 3, "method": "echo", "params": None}, 3),
        ({"jsonrpc": "2.0", "method": 5}, None),
        (42, None),
        ("a string", None),
        (None, None),
    ],
)
async def test_invalid_request_shapes_get_invalid_request(
    server: str, connect: Connect, message: object, reply_id: object
) -> None:
    raw = await connect(server)
    await raw.send(json.dumps(message).encode() + b"\n")
    reply = await raw.recv()
    assert reply["error"]["code"] == -32600
    assert reply["id"] == reply_id
    assert (await raw.call("echo", [1]))["result"] == [1]


async def test_unknown_method_gets_method_not_found(server: str, connect: Connect) -> None:
    raw = await connect(server)
    reply = await raw.call("no.such.method", msg_id=9)
    assert reply["id"] == 9
    assert reply["error"]["code"] == -32601


async def test_rpc_error_from_a_handler_is_sent_as_is(server: str, connect: Connect) -> None:
    raw = await connect(server)
    reply = await raw.call("invalid")
    assert reply["error"] == {"code": -32602, "message": "invalid params", "data": {"field": "x"}}


async def test_handler_exception_is_internal_error_without_traceback(
    server: str, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await connect(server)
    await raw.request("boom")
    line = await raw.line()
    assert json.loads(line)["error"] == {"code": -32603, "message": "internal error"}
    assert b"secret" not in line
    assert b"Traceback" not in line
    (record,) = [r for r in caplog.records if r.name == "bicameral.protocol"]
    assert record.exc_info is not None
    assert "secret-traceback-text" in caplog.text


async def test_unencodable_result_is_internal_error(server: str, connect: Connect) -> None:
    raw = await connect(server)
    reply = await raw.call("unencodable", msg_id=4)
    assert reply == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {"code": -32603, "message": "internal error"},
    }


async def test_notifications_get_no_response(server: str, connect: Connect) -> None:
    raw = await connect(server)
    for method in ("echo", "boom", "no.such.method", "invalid"):
        await raw.send(json.dumps({"jsonrpc": "2.0", "method": method}).encode() + b"\n")
    # The next line is the answer to this request, not to any notification.
    assert await raw.call("echo", ["after"], msg_id=7) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": ["after"],
    }


async def test_server_notification_reaches_the_client(server: str, connect: Connect) -> None:
    raw = await connect(server)
    await raw.request("notify_me")
    assert await raw.recv() == {"jsonrpc": "2.0", "method": "hello", "params": {"n": 1}}
    assert (await raw.recv())["result"] == "sent"


async def test_batch_of_valid_invalid_and_notifications(server: str, connect: Connect) -> None:
    raw = await connect(server)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["a"]},
        {"jsonrpc": "2.0", "method": "echo", "params": ["notification"]},
        1,
        {"jsonrpc": "2.0", "id": 2, "method": "no.such.method"},
        {"jsonrpc": "2.0", "id": 3, "method": "big"},
        {"jsonrpc": "2.0", "id": 4, "method": "boom"},
        {"foo": "bar"},
    ]
    await raw.send(json.dumps(batch).encode() + b"\n")
    replies = await raw.recv()
    assert isinstance(replies, list)
    assert len(replies) == 6
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert by_id[1]["result"] == ["a"]
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[3]["result"] == "x" * 65536
    assert by_id[4]["error"]["code"] == -32603
    assert sorted(r["error"]["code"] for r in replies if r["id"] is None) == [-32600, -32600]


async def test_empty_batch_is_one_invalid_request(server: str, connect: Connect) -> None:
    raw = await connect(server)
    await raw.send(b"[]\n")
    reply = await raw.recv()
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None


async def test_batch_of_notifications_gets_nothing(server: str, connect: Connect) -> None:
    raw = await connect(server)
    note = {"jsonrpc": "2.0", "method": "echo"}
    slow = {"jsonrpc": "2.0", "method": "big"}
    await raw.send(json.dumps([note, slow, note]).encode() + b"\n")
    assert (await raw.call("echo", ["next"], msg_id=5))["id"] == 5


async def test_slow_request_does_not_hold_up_a_fast_one(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    await raw.request("wait", {"key": "slow"}, msg_id=1)
    await raw.request("big", msg_id=2)
    await raw.request("echo", ["fast"], msg_id=3)
    assert {(await raw.recv())["id"], (await raw.recv())["id"]} == {2, 3}
    methods.gate("slow").set()
    assert await raw.recv() == {"jsonrpc": "2.0", "id": 1, "result": "slow"}


async def test_requests_beyond_max_in_flight_are_not_read(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    frames = [
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "wait", "params": {"key": str(i)}})
        for i in range(65)
    ]
    frames.append(json.dumps({"jsonrpc": "2.0", "id": "fast", "method": "echo"}))
    await raw.send("\n".join(frames).encode() + b"\n")
    while len(methods.started) < 64:
        await methods.started_changed.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert len(methods.started) == 64  # the 65th is not even read...
    assert raw.nothing_pending()  # ...nor the cheap request behind it
    methods.gate("3").set()
    assert (await raw.recv())["id"] == 3
    assert (await raw.recv())["id"] == "fast"
    await trio.testing.wait_all_tasks_blocked()
    assert len(methods.started) == 65
    for event in list(methods.release.values()):
        event.set()
    methods.gate("64").set()
    ids = {(await raw.recv())["id"] for _ in range(64)}
    assert ids == set(range(65)) - {3}


async def test_client_that_never_reads_holds_bounded_work(
    start_unix: StartUnix, connect: Connect, methods: Methods
) -> None:
    path = await start_unix(Limits(max_in_flight=8))
    flooder = await connect(path)
    frame = b'{"jsonrpc":"2.0","id":1,"method":"big"}\n'
    sent = 0
    # Write until our own socket buffer is full: the server stopped reading.
    with trio.move_on_after(2) as scope:
        while True:
            try:
                sent += flooder.sock.send(frame * 64)
            except BlockingIOError:
                await trio.testing.wait_all_tasks_blocked()
                try:
                    sent += flooder.sock.send(frame * 64)
                except BlockingIOError:
                    break
    assert not scope.cancelled_caught
    await trio.testing.wait_all_tasks_blocked()
    requests_sent = sent // len(frame)
    # At most max_in_flight handlers ran (blocked writing 64 KiB results)
    # plus those whose responses fit in the kernel buffers.
    assert methods.calls < 8 + 20
    assert requests_sent > 1000
    other = await connect(path)
    assert (await other.call("echo", [1]))["result"] == [1]


async def test_oversized_frame_without_newline_is_refused_and_closed(
    start_unix: StartUnix, connect: Connect
) -> None:
    path = await start_unix(Limits(max_frame=1000))
    raw = await connect(path)
    await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":"' + b"x" * 1000)
    rest = await raw.closed()
    reply = json.loads(rest)
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None


async def test_oversized_frame_with_newline_is_refused_and_closed(
    start_unix: StartUnix, connect: Connect
) -> None:
    path = await start_unix(Limits(max_frame=1000))
    raw = await connect(path)
    await raw.send(b"[" + b"1," * 600 + b"1]\n" + b'{"jsonrpc":"2.0","id":1,"method":"echo"}\n')
    lines = (await raw.closed()).splitlines()
    assert [json.loads(line)["error"]["code"] for line in lines] == [-32600]


async def test_frame_of_exactly_max_frame_is_accepted(
    start_unix: StartUnix, connect: Connect
) -> None:
    path = await start_unix(Limits(max_frame=1000))
    raw = await connect(path)
    head = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":"'
    frame = head + b"x" * (1000 - len(head) - 2) + b'"}'
    assert len(frame) == 1000
    await raw.send(frame + b"\n")
    assert (await raw.recv())["id"] == 1


async def test_unfinished_lines_across_connections_are_bounded_by_max_buffered(
    start_unix: StartUnix, connect: Connect
) -> None:
    path = await start_unix(Limits(max_frame=4 << 20, max_buffered=1 << 20))
    head = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":["'
    body = b"x" * (600 << 10)
    first, second = await connect(path), await connect(path)
    await first.send(head + body)  # 600 KiB held: within the budget
    await trio.testing.wait_all_tasks_blocked()
    with contextlib.suppress(trio.BrokenResourceError):  # closed while it sends
        await second.send(head + body)  # 1.2 MiB held across both: over it
    with trio.fail_after(10):
        reply = json.loads(await second.closed())
    assert reply["error"]["code"] == -32600
    assert "too much unfinished input" in reply["error"]["message"]
    # The connection within the budget finishes its line and is answered,
    await first.send(b'"]}\n')
    answer = await first.recv()
    assert answer.get("result") == [body.decode()], str(answer)[:300]
    # and what the closed one held was given back: a new client has the room.
    third = await connect(path)
    assert (await third.call("echo", ["y" * (900 << 10)]))["result"][0][:3] == "yyy"


async def test_client_stalled_in_a_partial_frame_is_closed(
    server: str, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    raw = await connect(server)
    await raw.send(b'{"jsonrpc":"2.0",')
    start = trio.current_time()
    assert await raw.closed() == b""
    assert 30 <= trio.current_time() - start < 31


async def test_slow_but_steady_partial_frame_is_not_closed(
    server: str, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    raw = await connect(server)
    frame = b'{"jsonrpc":"2.0","id":1,"method":"echo"}\n'
    for i in range(len(frame)):
        await raw.send(frame[i : i + 1])
        await trio.sleep(20)
    assert (await raw.recv())["id"] == 1


async def test_idle_connection_between_frames_stays_open(
    server: str, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    raw = await connect(server)
    await trio.sleep(3600)
    assert (await raw.call("echo", [1]))["result"] == [1]


async def test_crlf_and_blank_lines(server: str, connect: Connect) -> None:
    raw = await connect(server)
    await raw.send(b'\n\r\n   \n\t\r\n{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}\r\n\n')
    await raw.send(b'{"jsonrpc":"2.0","id":2,"method":"echo"}\r\n')
    assert (await raw.recv())["id"] == 1
    assert (await raw.recv())["id"] == 2


async def test_last_line_without_newline_is_answered_at_end_of_input(
    server: str, connect: Connect
) -> None:
    raw = await connect(server)
    await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"echo"}')
    await raw.stream.send_eof()
    assert json.loads(await raw.closed())["id"] == 1


async def test_in_flight_requests_are_answered_after_the_client_half_closes(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    await raw.request("wait", {"key": "k"})
    await raw.stream.send_eof()
    while not methods.started:
        await methods.started_changed.wait()
    methods.gate("k").set()
    assert json.loads(await raw.closed())["result"] == "k"


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xfe\xfd",
        b'{"jsonrpc":"2.0","id":1,"method":"echo","params":["\xc3\x28"]}',
        b'"\xed\xa0\x80"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"1" * 5000,
        b"NaN",
        b"[1e400]",
        b'{"jsonrpc":"2.0","id":1,"method":"echo"} trailing',
    ],
    ids=[
        "bytes",
        "utf8-in-string",
        "surrogate-bytes",
        "deep-array",
        "deep-object",
        "huge-int-5000-digits",
        "nan",
        "float-overflow",
        "trailing-garbage",
    ],
)
async def test_hostile_frames_are_parse_errors(server: str, connect: Connect, frame: bytes) -> None:
    raw = await connect(server)
    await raw.send(frame + b"\n")
    reply = await raw.recv()
    assert reply["error"]["code"] == -32700
    assert (await raw.call("echo", [1]))["result"] == [1]


async def test_huge_numbers_and_lone_surrogates_round_trip(server: str, connect: Connect) -> None:
    raw = await connect(server)
    big = 10**40
    await raw.send(
        b'{"jsonrpc":"2.0","id":%d,"method":"echo","params":[%d,-%d,1.5,"\\ud800"]}\n'
        % (big, big, big)
    )
    line = await raw.line()
    reply = json.loads(line)
    assert reply["id"] == big
    assert reply["result"][:2] == [big, -big]
    assert reply["result"][3] == "\ud800"


async def test_deep_but_reasonable_nesting_is_fine(server: str, connect: Connect) -> None:
    raw = await connect(server)
    params: list[object] = []
    for _ in range(200):
        params = [params]
    assert (await raw.call("echo", [params]))["result"] == [params]


async def test_second_client_is_served_while_the_first_misbehaves(
    start_unix: StartUnix, connect: Connect
) -> None:
    path = await start_unix(Limits(max_frame=4096))
    stalled = await connect(path)
    await stalled.send(b'{"jsonrpc":"2.0","id":1,"method":"ec')
    junk = await connect(path)
    await junk.send(b"\x00\xff garbage\n[]\n" * 50)
    oversized = await connect(path)
    await oversized.send(b"y" * 5000)
    good = await connect(path)
    for i in range(20):
        assert (await good.call("echo", [i], msg_id=i))["result"] == [i]
    assert json.loads(await oversized.closed())["error"]["code"] == -32600


async def test_connections_beyond_max_connections_are_closed_at_once(
    start_unix: StartUnix, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    path = await start_unix(Limits(max_connections=2))
    first = await connect(path)
    second = await connect(path)
    assert (await first.call("echo", [1]))["result"] == [1]
    assert (await second.call("echo", [2]))["result"] == [2]
    third = await connect(path)
    assert await third.closed() == b""
    assert "refusing a connection" in caplog.text
    await first.aclose()
    await trio.testing.wait_all_tasks_blocked()
    fourth = await connect(path)
    assert (await fourth.call("echo", [4]))["result"] == [4]


async def test_upgrade_hands_over_the_stream_and_the_bytes_already_read(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    await raw.request("wait", {"key": "before"}, msg_id="before")
    attach = b'{"jsonrpc":"2.0","id":"attach","method":"system.attach","params":{"mode":"raw"}}\n'
    await raw.send(attach + b"first line\n{not json-rpc")
    assert (await raw.recv())["id"] == "attach"
    await trio.testing.wait_all_tasks_blocked()
    # The earlier request is still in flight, so the upgrade waits for it.
    assert methods.upgraded == []
    methods.gate("before").set()
    assert (await raw.recv())["id"] == "before"
    assert await raw.line() == b"raw:first line"
    assert raw.buffer == b"{not json-rpc"
    assert methods.upgraded == [b"first line\n{not json-rpc"]
    await raw.send(b"more")
    while len(raw.buffer) < len(b"{not json-rpcraw:more"):
        raw.buffer += await raw.stream.receive_some()
    assert raw.buffer == b"{not json-rpcraw:more"


async def test_failed_attach_does_not_upgrade(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    reply = await raw.call("system.attach", {"mode": "fail"})
    assert reply["error"]["code"] == -32602
    assert (await raw.call("echo", [1]))["result"] == [1]


async def test_upgrade_inside_a_batch_is_refused(server: str, connect: Connect) -> None:
    raw = await connect(server)
    attach = {"jsonrpc": "2.0", "id": 1, "method": "system.attach", "params": {"mode": "raw"}}
    await raw.send(json.dumps([attach]).encode() + b"\n")
    (reply,) = await raw.recv()
    assert reply["error"]["code"] == -32603
    assert (await raw.call("echo", [1]))["result"] == [1]


async def test_frames_split_at_every_byte_boundary(server: str, connect: Connect) -> None:
    raw = await connect(server)
    frame = b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"k":"v\xc3\xa9"}}\r\n'
    for cut in range(1, len(frame)):
        await raw.send(frame[:cut])
        await trio.testing.wait_all_tasks_blocked()
        await raw.send(frame[cut:])
        assert (await raw.recv())["result"] == {"k": "vé"}


async def test_logs_use_the_protocol_logger(
    server: str, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = await connect(server)
    await raw.call("boom")
    assert {r.name for r in caplog.records} == {"bicameral.protocol"}
