"""Property tests: no input crashes the server or disturbs another client (SPEC §7, issue 6).

Each example gets a fresh server (pytest-trio runs every Hypothesis example
in its own Trio run), a victim connection that receives the generated
bytes, and a bystander connection that must keep being served.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bicameral.protocol import Limits, serve_unix
from tests.protocol.conftest import Methods, Raw

MAX_FRAME = 4096
CODES = {-32700, -32600, -32601, -32602, -32603}
# Methods that answer at once; "wait" would block and "system.attach" upgrade.
METHODS = ["echo", "boom", "invalid", "unencodable", "big", "notify_me", "whoami", "nope"]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
absent = st.just(...)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Request objects with every field either right, wrong-typed or missing."""
    fields = {
        "jsonrpc": draw(st.sampled_from(["2.0", "2.0", "1.0", 2, None, ...])),
        "id": draw(
            st.integers(-5, 10**25) | st.text(max_size=5) | st.none() | json_values | absent
        ),
        "method": draw(st.sampled_from(METHODS) | json_values | absent),
        "params": draw(
            st.lists(json_values, max_size=3)
            | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
            | json_values
            | absent
        ),
    }
    return {key: value for key, value in fields.items() if value is not ...}


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Flip, insert or delete bytes at the given positions."""
    buf = bytearray(data)
    for kind, where, byte in edits:
        if not buf:
            break
        position = where % len(buf)
        if kind == 0:
            buf[position] = byte
        elif kind == 1:
            buf.insert(position, byte)
        else:
            del buf[position]
    return bytes(buf)


frames = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    requests().map(lambda r: json.dumps(r).encode()),
    st.lists(requests() | json_values, max_size=5).map(lambda b: json.dumps(b).encode()),
    st.tuples(
        requests().map(lambda r: json.dumps(r).encode()),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)),
            min_size=1,
            max_size=4,
        ),
    ).map(lambda t: mutate(*t)),
)


def check_response(response: Any) -> None:
    assert isinstance(response, dict), response
    assert response["jsonrpc"] == "2.0"
    assert "result" in response or response["error"]["code"] in CODES, response


def check_message(message: Any) -> None:
    if isinstance(message, list):
        assert message, "an empty array is never sent"
        for response in message:
            check_response(response)
    elif message.get("method") == "hello":
        pass  # notify_me's notification
    else:
        check_response(message)


async def run_server(nursery: trio.Nursery, sockdir: str) -> str:
    path = os.path.join(sockdir, "h.sock")
    started: str = await nursery.start(
        functools.partial(
            serve_unix, path, Methods().dispatcher(), limits=Limits(max_frame=MAX_FRAME)
        )
    )
    return started


async def answers_until_sentinel(raw: Raw) -> list[Any]:
    """Send a sentinel request; return every message that came before its answer."""
    await raw.request("echo", ["sentinel"], msg_id="sentinel")
    seen: list[Any] = []
    while True:
        message = json.loads(await raw.line())
        if isinstance(message, dict) and message.get("id") == "sentinel":
            assert message["result"] == ["sentinel"]
            return seen
        seen.append(message)


@SETTINGS
@given(frame=frames)
async def test_any_frame_gets_a_wellformed_answer_and_spares_other_clients(
    sockdir: str, frame: bytes
) -> None:
    async with trio.open_nursery() as nursery:
        path = await run_server(nursery, sockdir)
        victim = await Raw.unix(path)
        bystander = await Raw.unix(path)
        await victim.send(frame + b"\n")
        for message in await answers_until_sentinel(victim):
            check_message(message)
        assert (await bystander.call("echo", [1]))["result"] == [1]
        await victim.aclose()
        await bystander.aclose()
        nursery.cancel_scope.cancel()


def expected(request: dict[str, Any]) -> int | None:
    """An independent statement of the rules: the error code due, 0 for a result, None for none."""
    msg_id = request.get("id", ...)
    if msg_id is not ... and (
        isinstance(msg_id, bool) or not isinstance(msg_id, (str, int, float, type(None)))
    ):
        return -32600
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return -32600
    if "params" in request and not isinstance(request["params"], (list, dict)):
        return -32600
    if msg_id is ...:
        return None
    return {
        "echo": 0,
        "big": 0,
        "notify_me": 0,
        "whoami": 0,
        "boom": -32603,
        "invalid": -32602,
        "unencodable": -32603,
    }.get(request["method"], -32601)


@SETTINGS
@given(request=requests(), data=st.data())
async def test_request_split_anywhere_gets_the_answer_the_rules_say(
    sockdir: str, request: dict[str, Any], data: st.DataObject
) -> None:
    frame = json.dumps(request).encode() + data.draw(st.sampled_from([b"\n", b"\r\n"]))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(frame) - 1), max_size=6))))
    async with trio.open_nursery() as nursery:
        path = await run_server(nursery, sockdir)
        raw = await Raw.unix(path)
        previous = 0
        for cut in [*cuts, len(frame)]:
            await raw.send(frame[previous:cut])
            previous = cut
            await trio.testing.wait_all_tasks_blocked()
        messages = [m for m in await answers_until_sentinel(raw) if m.get("method") != "hello"]
        code = expected(request)
        if code is None:
            assert messages == []
        else:
            (reply,) = messages
            check_response(reply)
            if code == 0:
                assert "result" in reply
                if request["method"] == "echo":
                    assert reply["result"] == request.get("params")
            else:
                assert reply["error"]["code"] == code
            if code != -32600 or ("id" in request and reply["id"] is not None):
                sent_id = request.get("id")
                assert reply["id"] == sent_id or (
                    isinstance(sent_id, float) and math.isclose(reply["id"], sent_id)
                )
        await raw.aclose()
        nursery.cancel_scope.cancel()
