"""Who may connect: socket mode, peer credentials, the TCP token gate, the socket file."""

from __future__ import annotations

import errno
import functools
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from bicameral.protocol import Dispatcher, Limits, _server, serve_tcp, serve_unix
from tests.protocol.conftest import TOKEN, Methods, Raw

Connect = Callable[[str], Awaitable[Raw]]


async def test_socket_file_is_mode_0600(server: str) -> None:
    mode = os.stat(server).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_socket_is_owner_only_even_under_a_permissive_umask(
    nursery: trio.Nursery, sockdir: str
) -> None:
    old = os.umask(0)
    try:
        path = await nursery.start(serve_unix, os.path.join(sockdir, "u.sock"), Dispatcher())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_socket_file_is_removed_on_exit(sockdir: str) -> None:
    path = os.path.join(sockdir, "x.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_unix, path, Dispatcher())
        assert os.listdir(sockdir) == ["x.sock"]
        nursery.cancel_scope.cancel()
    assert os.listdir(sockdir) == []


async def test_stale_socket_file_is_replaced(nursery: trio.Nursery, sockdir: str) -> None:
    path = os.path.join(sockdir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens
    await nursery.start(serve_unix, path, Methods().dispatcher())
    raw = await Raw.unix(path)
    assert (await raw.call("echo", [1]))["result"] == [1]
    await raw.aclose()


async def test_live_socket_is_not_taken_over(server: str) -> None:
    with pytest.raises(OSError) as info:
        await serve_unix(server, Dispatcher())
    assert info.value.errno == errno.EADDRINUSE


async def test_path_over_the_af_unix_limit_is_a_clear_error(sockdir: str) -> None:
    path = os.path.join(sockdir, "a" * 120)
    with pytest.raises(OSError, match="AF_UNIX limit"):
        await serve_unix(path, Dispatcher())


async def test_listen_backlog_is_at_least_1024() -> None:
    assert _server.BACKLOG >= 1024


def test_peer_decision_only_admits_our_own_uid() -> None:
    assert _server.peer_allowed(1000, 1000)
    assert not _server.peer_allowed(1001, 1000)
    assert not _server.peer_allowed(0, 1000)
    assert _server.peer_allowed(None, 1000)  # no peer credentials on this platform


async def test_connection_carries_our_uid(server: str, connect: Connect) -> None:
    raw = await connect(server)
    reply = await raw.call("whoami")
    assert reply["result"] == {"uid": os.geteuid(), "transport": "unix"}


async def test_connection_from_another_uid_is_refused_and_logged(
    server: str, connect: Connect, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_server, "peer_uid", lambda sock: os.geteuid() + 1)
    raw = await connect(server)
    await raw.request("echo", [1])
    assert await raw.closed() == b""
    assert f"uid {os.geteuid() + 1}" in caplog.text
    monkeypatch.undo()
    other = await connect(server)
    assert (await other.call("echo", [2]))["result"] == [2]


async def test_tcp_started_value_is_the_bound_address(tcp_server: str) -> None:
    host, _, port = tcp_server.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0


@pytest.mark.parametrize(
    "params",
    [None, {}, {"token": "wrong"}, {"token": TOKEN[:-1]}, {"token": 12}, {"token": TOKEN + "x"}],
)
async def test_tcp_attach_without_the_right_token_is_unauthorized(
    tcp_server: str, connect: Connect, methods: Methods, params: object
) -> None:
    raw = await connect(tcp_server)
    reply = await raw.call("system.attach", params)
    assert reply["error"]["code"] == -32001
    assert methods.attach_calls == []  # the handler never saw it
    assert (await raw.call("echo", [1]))["error"]["code"] == -32001


async def test_tcp_requests_before_attach_are_unauthorized(
    tcp_server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(tcp_server)
    for method in ("echo", "no.such.method", "boom"):
        reply = await raw.call(method, msg_id=method)
        assert reply == {
            "jsonrpc": "2.0",
            "id": method,
            "error": {"code": -32001, "message": reply["error"]["message"]},
        }
    # Batches are refused whole before the token (SPEC §7): one error.
    batch = [{"jsonrpc": "2.0", "id": i, "method": "echo"} for i in range(3)]
    await raw.send(json.dumps(batch).encode() + b"\n")
    reply = await raw.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32001
    assert methods.calls == 0


async def test_tcp_attach_with_the_token_opens_the_connection(
    tcp_server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(tcp_server)
    reply = await raw.call("system.attach", {"token": TOKEN, "mode": "rpc"})
    assert reply["result"]["session_id"] == "s1"
    assert methods.attach_calls == [{"token": TOKEN, "mode": "rpc"}]
    assert (await raw.call("echo", [1]))["result"] == [1]
    assert (await raw.call("whoami"))["result"] == {"uid": None, "transport": "tcp"}


async def test_tcp_attach_that_fails_leaves_the_connection_unauthenticated(
    tcp_server: str, connect: Connect
) -> None:
    raw = await connect(tcp_server)
    reply = await raw.call("system.attach", {"token": TOKEN, "mode": "fail"})
    assert reply["error"]["code"] == -32602
    assert (await raw.call("echo", [1]))["error"]["code"] == -32001


async def test_tcp_each_connection_authenticates_on_its_own(
    tcp_server: str, connect: Connect
) -> None:
    first = await connect(tcp_server)
    await first.call("system.attach", {"token": TOKEN})
    second = await connect(tcp_server)
    assert (await second.call("echo", [1]))["error"]["code"] == -32001


async def test_tcp_upgrade_after_attach(tcp_server: str, connect: Connect) -> None:
    raw = await connect(tcp_server)
    await raw.request("system.attach", {"token": TOKEN, "mode": "raw"})
    assert (await raw.recv())["result"]["mode"] == "raw"
    await raw.send(b"ping\n")
    assert await raw.line() == b"raw:ping"


async def test_serve_tcp_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="token"):
        await serve_tcp("127.0.0.1", 0, Dispatcher(), token="")


# -- TCP: nobody without the token can lock the owner out (SPEC §7) -----------


async def _tcp(nursery: trio.Nursery, methods: Methods, limits: Limits) -> str:
    address: str = await nursery.start(
        functools.partial(
            serve_tcp, "127.0.0.1", 0, methods.dispatcher(), token=TOKEN, limits=limits
        )
    )
    return address


async def test_tcp_strangers_are_capped_apart_and_never_crowd_out_the_owner(
    nursery: trio.Nursery, methods: Methods, connect: Connect
) -> None:
    address = await _tcp(nursery, methods, Limits(max_connections=4, max_unauthenticated=3))
    strangers = [await connect(address) for _ in range(10)]  # never show the token
    await trio.testing.wait_all_tasks_blocked()
    owners = []
    for _ in range(4):  # an owner shows the token in its first message
        raw = await connect(address)
        owners.append(raw)
        reply = await raw.call("system.attach", {"token": TOKEN, "mode": "rpc"})
        assert "result" in reply, reply
        assert (await raw.call("echo", [1]))["result"] == [1]
    # At the cap each newcomer dropped the oldest stranger: the owners all
    # got in, and only the two newest strangers are still waiting for their
    # timeout.
    for raw in strangers[:8]:
        assert await raw.closed() == b""


async def test_tcp_connection_without_the_token_is_closed_after_the_timeout(
    nursery: trio.Nursery,
    methods: Methods,
    connect: Connect,
    autojump_clock: trio.testing.MockClock,
) -> None:
    address = await _tcp(nursery, methods, Limits(auth_timeout=5.0))
    stranger = await connect(address)
    owner = await connect(address)
    assert "result" in await owner.call("system.attach", {"token": TOKEN, "mode": "rpc"})
    t0 = trio.current_time()
    assert await stranger.closed() == b""
    assert 5.0 <= trio.current_time() - t0 < 6.0
    await trio.sleep(60)
    assert (await owner.call("echo", [2]))["result"] == [2]  # the owner is never timed out


async def test_tcp_frames_before_the_token_are_limited_to_64_kib(
    nursery: trio.Nursery, methods: Methods, connect: Connect
) -> None:
    address = await _tcp(nursery, methods, Limits())
    stranger = await connect(address)
    await stranger.send(
        b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["' + b"x" * 70_000
    )
    reply = await stranger.recv()
    assert reply["error"]["code"] == -32600
    assert await stranger.closed() == b""
    # With the token, the full frame limit applies.
    owner = await connect(address)
    assert "result" in await owner.call("system.attach", {"token": TOKEN, "mode": "rpc"})
    big = "y" * 200_000
    assert (await owner.call("echo", [big]))["result"] == [big]


async def test_a_batch_over_1000_entries_is_refused_whole(
    server: str, connect: Connect, methods: Methods
) -> None:
    raw = await connect(server)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "echo", "params": [i]} for i in range(1001)]
    await raw.send(json.dumps(batch).encode() + b"\n")
    reply = await raw.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "1001" in reply["error"]["message"]
    assert methods.calls == 0
    ok = [{"jsonrpc": "2.0", "id": i, "method": "echo", "params": [i]} for i in range(1000)]
    await raw.send(json.dumps(ok).encode() + b"\n")
    assert len(await raw.recv()) == 1000


async def test_accept_survives_running_out_of_descriptors_logging_once_per_burst(
    nursery: trio.Nursery,
    sockdir: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0
    real_accept = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, object]:
        nonlocal calls
        calls += 1
        if calls <= 200:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    path = await nursery.start(
        functools.partial(serve_unix, os.path.join(sockdir, "b.sock"), Methods().dispatcher())
    )
    raw = await Raw.unix(path)
    assert (await raw.call("echo", [1]))["result"] == [1]
    lines = [r.getMessage() for r in caplog.records if "EMFILE" in r.getMessage()]
    # 200 failed accepts over 20 s of retries: a handful of lines, not 200.
    assert 1 <= len(lines) <= 10, lines
    assert "Traceback" not in caplog.text
    await raw.aclose()
