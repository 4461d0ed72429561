"""Hostile input against the real daemon process (issue 6, SPEC §7).

`tests/protocol/test_hostile.py` fuzzes the protocol server in-process with
made-up methods; these tests aim at the daemon itself: its own methods
(``system.attach``, ``adapters.restart``...) with every field of their
params wrong, junk batches, invalid UTF-8, deep nesting, huge numbers,
frames split at byte boundaries, and hostile MCP sessions after
``system.attach {"mode": "mcp"}``. One daemon serves the whole module; a
bystander connection must be served after every example, and at the end the
daemon must answer ``system.health`` with as many file descriptors open as
before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import termios
from array import array
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bicameral.protocol import BlockingClient
from tests.protocol.test_hostile import mutate  # the same byte flips the in-process fuzzing uses

from .conftest import (
    Home,
    fd_count,
    leftovers,
    new_home,
    read_lines,
    rpc,
    rss_kib,
    send_lines,
    wait_for,
)

CODES = {-32700, -32600, -32601, -32602, -32603, -32000}
# Every method the daemon serves (with its MCP plugin) except system.shutdown,
# which would end the module's daemon.
METHODS = [
    "system.version",
    "system.health",
    "system.attach",
    "system.reload",
    "adapters.list",
    "adapters.restart",
    "mcp.servers",
    "no.such.method",
]

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Shared:
    """The module's daemon, and a bystander connection that must keep being served."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.pid = home.start()
        self.bystander = BlockingClient.connect_unix(str(home.socket), timeout=10)
        self.bystander.call("system.version")
        self.fds = fd_count(self.pid)
        self.rss = rss_kib(self.pid)

    def check_bystander(self) -> None:
        assert self.bystander.call("system.version", timeout=10)["protocol_version"] == "1"


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    home = new_home()
    try:
        s = Shared(home)
        yield s
        s.bystander.close()
        home.stop()
        problems = leftovers(home)
        assert not problems, problems
    finally:
        leftovers(home)
        import shutil

        shutil.rmtree(home.path, ignore_errors=True)


# --- strategies ----------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
ABSENT = object()


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is right, wrong-typed, or missing."""
    return good | json_values | st.just(ABSENT)


def no_mcp_upgrade(value: Any) -> Any:
    # A successful attach in "mcp" mode turns the connection into an MCP
    # session (covered by its own tests below), not what these examples probe.
    return "rpc" if value == "mcp" else value


ATTACH_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "tenant_id": field(st.text(max_size=8)),
        "client": field(st.text(max_size=8)),
        "mode": field(st.sampled_from(["rpc", "mcp", "echo", ""])).map(no_mcp_upgrade),
        "server": field(st.sampled_from(["nope", "", "a__b"])),
        "token": field(st.text(max_size=8)),
        "stdio": field(st.sampled_from(["pass", "relay"])),
    },
)
PARAMS_BY_METHOD: dict[str, st.SearchStrategy[Any]] = {
    "system.attach": ATTACH_PARAMS | json_values,
    "adapters.restart": st.fixed_dictionaries(
        {}, optional={"name": field(st.sampled_from(["nope", "", "signals", "server"]))}
    )
    | json_values,
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS) | json_values)
    params_strategy = (
        PARAMS_BY_METHOD.get(method, json_values) if isinstance(method, str) else json_values
    )
    fields = {
        "jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2, None, ABSENT])),
        "id": draw(st.integers(-5, 10**30) | st.text(max_size=5) | json_values | st.just(ABSENT)),
        "method": method,
        "params": draw(params_strategy | st.just(ABSENT)),
    }
    request: dict[str, Any] = strip_absent(fields)
    return request


def strip_absent(value: Any) -> Any:
    """Drop the fields a strategy left out (marked ``ABSENT``), at any depth."""
    if isinstance(value, dict):
        return {k: strip_absent(v) for k, v in value.items() if v is not ABSENT}
    if isinstance(value, list):
        return [strip_absent(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4
)
frames = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    requests().map(dumps),
    st.lists(requests() | json_values, max_size=6).map(dumps),
    st.tuples(requests().map(dumps), edits).map(lambda t: mutate(*t)),
)


# --- checks ----------------------------------------------------------------------------


def check_response(response: Any) -> None:
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    if "error" in response:
        error = response["error"]
        assert error["code"] in CODES, response
        assert "Traceback" not in json.dumps(error), response
    else:
        assert "result" in response, response


def check_message(message: Any) -> None:
    if isinstance(message, list):
        assert message, "an empty batch reply is never sent"
        for response in message:
            check_response(response)
    else:
        check_response(message)


def all_replies(sock: socket.socket) -> list[Any]:
    """Close our sending side and read every message until the daemon closes.

    The daemon answers requests concurrently (an immediate method may
    overtake a slower one), so a sentinel request proves nothing about
    order; the end of the stream does: the daemon closes a connection only
    once every request read from it has been answered.
    """
    sock.shutdown(socket.SHUT_WR)
    buf = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in buf.split(b"\n") if line.strip()]


# --- the tests ------------------------------------------------------------------------------


@SETTINGS
@given(frame=frames)
def test_any_frame_to_the_daemon_gets_wellformed_answers_and_spares_a_bystander(
    shared: Shared, frame: bytes
) -> None:
    with shared.home.connect() as victim:
        victim.sendall(frame + b"\n")
        for message in all_replies(victim):
            check_message(message)
    shared.check_bystander()


def outq(sock: socket.socket) -> int:
    """Bytes we sent that the peer has not read yet (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0])


def send_in_pieces(sock: socket.socket, data: bytes, cuts: list[int]) -> None:
    """Send ``data`` cut at ``cuts``, each piece only once the daemon has read the last."""
    previous = 0
    for cut in [*cuts, len(data)]:
        sock.sendall(data[previous:cut])
        previous = cut
        wait_for(lambda: outq(sock) == 0, what="the daemon to read a piece")


def test_every_method_split_at_every_byte_boundary_is_answered_once(shared: Shared) -> None:
    good = [
        {"jsonrpc": "2.0", "id": "v", "method": "system.version"},
        {"jsonrpc": "2.0", "id": "a", "method": "system.attach", "params": {"client": "é✓"}},
        {"jsonrpc": "2.0", "id": "r", "method": "adapters.restart", "params": {"name": 7}},
        [{"jsonrpc": "2.0", "id": "b1", "method": "adapters.list"}, 5],
    ]
    with shared.home.connect() as sock:
        for message in good:
            frame = dumps(message) + b"\r\n"
            send_in_pieces(sock, frame, list(range(1, len(frame))))
            (reply,) = read_lines(sock, 1)
            check_message(reply)
            if isinstance(message, dict):
                assert reply["id"] == message["id"]
        assert all_replies(sock) == []
    shared.check_bystander()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), data=st.data())
def test_a_request_split_anywhere_gets_the_same_answer_as_whole(
    shared: Shared, request: dict[str, Any], data: st.DataObject
) -> None:
    frame = dumps(request) + b"\n"
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(frame) - 1), max_size=5))))
    with shared.home.connect() as sock:
        send_in_pieces(sock, frame, cuts)
        for message in all_replies(sock):
            check_message(message)
    shared.check_bystander()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"system.version\xff"}', -32700),  # invalid UTF-8
        (b'{"jsonrpc":"2.0","id":1,"method":"\xc3\x28"}', -32700),
        (b"\xef\xbb\xbf" + b'{"jsonrpc":"2.0","id":1,"method":"system.version"}', -32700),
        (b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}', -32601),  # lone surrogate
        (b"[" * 200_000, -32700),  # deep nesting
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, -32700),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"adapters.restart","params":{"name":'
            + b"[" * 1000
            + b"]" * 1000
            + b"}}",
            -32602,
        ),
        (b'{"jsonrpc":"2.0","id":1e400,"method":"system.version"}', -32700),  # huge float
        (b'{"jsonrpc":"2.0","id":' + b"9" * 100_000 + b',"method":"system.version"}', -32700),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"system.version","params":' + b"1" * 5000 + b"}",
            -32700,
        ),
        (b'{"jsonrpc":"2.0","id":NaN,"method":"system.version"}', -32700),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"system.attach","params":{"mode":'
            + b"[" * 900
            + b"]" * 900
            + b"}}",
            -32602,
        ),
        (
            b"["
            + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"adapters.restart"}'] * 2000)
            + b"]",
            -32600,
        ),  # a batch over SPEC §7's 1,000 entries: refused whole
        (b"[" + b",".join([b"1"] * 10_000) + b"]", -32600),  # likewise, of junk
        (
            b"["
            + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"adapters.restart"}'] * 1000)
            + b"]",
            None,
        ),  # a big batch of invalid params
        (b"[" + b",".join([b"1"] * 1000) + b"]", None),  # a batch of junk
        (b"[[]]", None),
        (b"[]", -32600),
    ],
    ids=lambda v: v[:24].decode("latin-1") if isinstance(v, bytes) else str(v),
)
def test_malformed_frames_get_the_right_error(
    shared: Shared, frame: bytes, code: int | None
) -> None:
    with shared.home.connect(timeout=20) as sock:
        sock.sendall(frame + b"\n")
        messages = all_replies(sock)
    assert len(messages) == 1, messages[:3]
    (reply,) = messages
    check_message(reply)
    if code is not None:
        assert reply["error"]["code"] == code, reply
    else:
        assert isinstance(reply, list)
        assert all(r["error"]["code"] in (-32600, -32602) for r in reply)
    shared.check_bystander()


def test_an_exact_huge_integer_id_comes_back_exact(shared: Shared) -> None:
    big = 10**4000
    with shared.home.connect() as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":%d,"method":"system.version"}\n' % big)
        (reply,) = read_lines(sock, 1)
    assert reply["id"] == big


def test_attach_in_mcp_mode_inside_a_batch_is_refused_and_the_connection_goes_on(
    shared: Shared,
) -> None:
    with shared.home.connect() as sock:
        send_lines(
            sock,
            [{"jsonrpc": "2.0", "id": 1, "method": "system.attach", "params": {"mode": "mcp"}}],
        )
        (reply,) = read_lines(sock, 1)
        assert isinstance(reply, list) and "error" in reply[0], reply
        check_message(reply)
        assert rpc(sock, "system.version")["result"]["protocol_version"] == "1"


# --- hostile MCP sessions (after system.attach in mcp mode) -----------------------------------

mcp_messages = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": field(st.just("2.0")),
            "id": field(st.integers(0, 10) | st.text(max_size=3)),
            "method": field(
                st.sampled_from(
                    [
                        "initialize",
                        "ping",
                        "tools/list",
                        "tools/call",
                        "resources/read",
                        "prompts/get",
                        "notifications/cancelled",
                        "notifications/initialized",
                        "completion/complete",
                        "logging/setLevel",
                    ]
                )
            ),
            "params": field(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": field(st.sampled_from(["bicameral__status", "x__y", "nope"])),
                        "uri": field(st.sampled_from(["bicameral://x/y", "file:///"])),
                        "requestId": json_values,
                        "arguments": json_values,
                    },
                )
            ),
            "result": json_values,
            "error": json_values,
        },
    ).map(strip_absent),
)


def mcp_session(home: Home) -> tuple[socket.socket, bytearray]:
    sock = home.connect()
    reply = rpc(sock, "system.attach", {"mode": "mcp", "client": "hardening"})
    assert reply["result"]["mode"] == "mcp", reply
    return sock, bytearray()


def mcp_ping(sock: socket.socket, buf: bytearray, msg_id: str = "ping-sentinel") -> None:
    send_lines(sock, {"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    while True:
        (message,) = read_lines(sock, 1, buf)
        if isinstance(message, dict) and message.get("id") == msg_id:
            assert message.get("result") == {}, message
            return


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(mcp_messages, min_size=1, max_size=4), junk=st.binary(max_size=40))
def test_hostile_mcp_sessions_never_disturb_another_mcp_session(
    shared: Shared, messages: list[Any], junk: bytes
) -> None:
    bystander, bystander_buf = mcp_session(shared.home)
    with bystander:
        victim, _ = mcp_session(shared.home)
        with victim:
            payload = (
                b"".join(dumps(m) + b"\n" for m in messages) + junk.replace(b"\n", b"") + b"\n"
            )
            with contextlib.suppress(OSError):
                victim.sendall(payload)
        # The victim may have been closed by the daemon: that is allowed. The
        # other session, and plain RPC, must not notice.
        mcp_ping(bystander, bystander_buf)
    shared.check_bystander()


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": [1]},
        {"jsonrpc": "2.0", "id": {"a": 1}, "result": {}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": {}}},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/call", "params": {"name": "x__y"}},
        {"jsonrpc": "2.0", "id": [1], "method": "ping"},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": "abc", "message": 5}},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []},
    ],
    ids=repr,
)
def test_mcp_messages_with_unusable_ids_or_fields_leave_the_session_open(
    shared: Shared, message: Any
) -> None:
    sock, buf = mcp_session(shared.home)
    with sock:
        send_lines(sock, message)
        mcp_ping(sock, buf)


# --- hostile descriptor passing (system.attach {"stdio": "pass"}) ---------------------------------


def attach_passing(home: Home) -> socket.socket:
    sock = home.connect()
    reply = rpc(sock, "system.attach", {"mode": "mcp", "stdio": "pass"})
    assert reply["result"]["stdio"] == "pass", reply
    return sock


def session_end(sock: socket.socket) -> bytes:
    """What the daemon says before it closes the session (``bye`` or nothing)."""
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("count", [0, 1, 3])
def test_passing_the_wrong_number_of_descriptors_ends_that_session_only(
    shared: Shared, count: int
) -> None:
    fds_before = fd_count(shared.pid)
    with attach_passing(shared.home) as sock:
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]
        try:
            sock.sendmsg(
                [b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))] if fds else []
            )
        finally:
            for fd in fds:
                os.close(fd)
        # None or one: closed. Three: the kernel keeps the two the daemon has
        # room for (and closes the third); /dev/null reads EOF: "bye".
        assert session_end(sock) in (b"", b"bye\n")
    shared.check_bystander()
    wait_for(lambda: fd_count(shared.pid) <= fds_before, what="the passed descriptors closed")


@pytest.mark.parametrize(
    "source",
    ["/dev/zero", "directory", "listening socket", "regular file"],
)
def test_passing_unusable_descriptors_ends_that_session_and_leaks_nothing(
    shared: Shared, source: str
) -> None:
    fds_before = fd_count(shared.pid)
    keep: list[Any] = []
    if source == "/dev/zero":
        in_fd = os.open("/dev/zero", os.O_RDONLY)
    elif source == "directory":
        in_fd = os.open(shared.home.path, os.O_RDONLY)
    elif source == "listening socket":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(shared.home.path / "l.sock"))
        listener.listen()
        keep.append(listener)
        in_fd = os.dup(listener.fileno())
    else:
        junk = shared.home.path / "junk.txt"
        junk.write_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n' * 3 + b"[" * 1000)
        in_fd = os.open(junk, os.O_RDONLY)
    out_fd = os.open(os.devnull, os.O_WRONLY)
    try:
        with attach_passing(shared.home) as sock:
            sock.sendmsg(
                [b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", [in_fd, out_fd]))]
            )
            os.close(in_fd)
            os.close(out_fd)
            # It reads what it was given until it ends or breaks the line limit,
            # then ends the session.
            session_end(sock)
    finally:
        for item in keep:
            item.close()
        with contextlib.suppress(FileNotFoundError):
            (shared.home.path / "l.sock").unlink()
    shared.check_bystander()
    wait_for(lambda: fd_count(shared.pid) <= fds_before, what="the passed descriptors closed")


# --- and after all of it -----------------------------------------------------------------------


def test_zz_after_all_the_junk_the_daemon_is_healthy_and_leaks_no_descriptors(
    shared: Shared,
) -> None:
    # Last in this module (pytest keeps definition order).
    health = shared.bystander.call("system.health", timeout=10)
    assert health["pid"] == shared.pid
    assert health["status"] in ("ok", "degraded")
    wait_for(lambda: fd_count(shared.pid) <= shared.fds, timeout=10, what="fds back to baseline")
    # Parsing 200k-deep brackets and 100k-digit numbers takes memory; it
    # must be given back to the allocator's pools, not kept per connection.
    assert rss_kib(shared.pid) - shared.rss < 64 * 1024
