"""Fixtures for the protocol tests: a server in the test's nursery, raw clients."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

from bicameral.platform import CURRENT
from bicameral.protocol import (
    Connection,
    Dispatcher,
    Limits,
    RPCError,
    _poller,
    serve_tcp,
    serve_unix,
)

TOKEN = "0123456789abcdef" * 4


class Methods:
    """The methods every test server has, and what the tests observe of them."""

    def __init__(self) -> None:
        self.release: dict[str, trio.Event] = {}
        self.started: list[Any] = []
        self.started_changed = trio.Event()
        self.attach_calls: list[Any] = []
        self.upgraded: list[bytes] = []
        self.calls = 0
        self.marks: list[Any] = []

    def gate(self, key: str) -> trio.Event:
        return self.release.setdefault(key, trio.Event())

    def dispatcher(self) -> Dispatcher:
        d = Dispatcher()

        @d.method("echo")
        async def echo(params: Any, conn: Connection) -> Any:
            self.calls += 1
            return params

        @d.method("mark")
        async def mark(params: Any, conn: Connection) -> Any:
            """Answered in line (no await): records the order requests are answered in."""
            self.marks.append(params[0])
            return params[0]

        @d.method("blob")
        async def blob(params: Any, conn: Connection) -> Any:
            """Answered in line: a small request with a large answer."""
            return "b" * params[0]

        @d.method("huge")
        async def huge(params: Any, conn: Connection) -> Any:
            """Runs in a task (it has an await) but answers at once, with a large answer."""
            if params is None:
                await trio.lowlevel.checkpoint()
            return "h" * params[0]

        @d.method("whoami")
        async def whoami(params: Any, conn: Connection) -> Any:
            return {"uid": conn.peer_uid, "transport": conn.transport}

        @d.method("wait")
        async def wait(params: Any, conn: Connection) -> Any:
            """Blocks until the test releases params["key"]."""
            self.started.append(params["key"])
            self.started_changed.set()
            self.started_changed = trio.Event()
            await self.gate(params["key"]).wait()
            return params["key"]

        @d.method("big")
        async def big(params: Any, conn: Connection) -> Any:
            self.calls += 1
            await trio.lowlevel.checkpoint()
            return "x" * 65536

        @d.method("boom")
        async def boom(params: Any, conn: Connection) -> Any:
            raise ValueError("secret-traceback-text")

        @d.method("invalid")
        async def invalid(params: Any, conn: Connection) -> Any:
            raise RPCError(-32602, "invalid params", {"field": "x"})

        @d.method("unencodable")
        async def unencodable(params: Any, conn: Connection) -> Any:
            return {"obj": object()}

        @d.method("notify_me")
        async def notify_me(params: Any, conn: Connection) -> Any:
            await conn.send_notification("hello", {"n": 1})
            return "sent"

        @d.method("system.attach")
        async def attach(params: Any, conn: Connection) -> Any:
            self.attach_calls.append(params)
            if params.get("mode") == "fail":
                raise RPCError(-32602, "bad mode")
            if params.get("mode") == "raw":
                conn.upgrade(self._raw_mode)
            return {"session_id": "s1", "mode": params.get("mode", "rpc")}

        return d

    async def _raw_mode(self, stream: trio.SocketStream, buffered: bytes) -> None:
        """Echo mode: prefixes each chunk with "raw:", starting with what was buffered."""
        self.upgraded.append(buffered)
        if buffered:
            await stream.send_all(b"raw:" + buffered)
        while data := await stream.receive_some():
            await stream.send_all(b"raw:" + data)


@pytest.fixture(autouse=True, params=["poller", "adaptive", "direct"])
def poller_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs against each way of waiting for input (see _poller).

    "poller": every reader parks in the poller, even a lone one;
    "adaptive": the default (a lone connection waits on its own socket);
    "direct": no poller, as on platforms without epoll.
    """
    mode: str = request.param
    if mode != "direct" and not _poller.ENABLED:
        pytest.skip("no epoll on this platform")
    monkeypatch.setattr(_poller, "ENABLED", mode != "direct")
    if mode == "poller":
        monkeypatch.setattr(_poller, "SHARE_FROM", 1)
    return mode


@pytest.fixture
def sockdir() -> Iterator[str]:
    if not CURRENT.posix:
        pytest.skip(f"POSIX only, this is {CURRENT.label}: a Unix socket server")
    # pytest's tmp_path is too long for AF_UNIX's 107 bytes.
    path = tempfile.mkdtemp(dir="/tmp", prefix="bcp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def methods() -> Methods:
    return Methods()


StartUnix = Callable[..., Awaitable[str]]


@pytest.fixture
def start_unix(nursery: trio.Nursery, sockdir: str, methods: Methods) -> StartUnix:
    async def start(limits: Limits = Limits(), name: str = "s.sock") -> str:  # noqa: B008
        path = os.path.join(sockdir, name)
        await nursery.start(
            functools.partial(serve_unix, path, methods.dispatcher(), limits=limits)
        )
        return path

    return start


@pytest.fixture
async def server(start_unix: StartUnix) -> str:
    return await start_unix()


@pytest.fixture
async def tcp_server(nursery: trio.Nursery, methods: Methods) -> str:
    address: str = await nursery.start(
        functools.partial(serve_tcp, "127.0.0.1", 0, methods.dispatcher(), token=TOKEN)
    )
    return address


class Raw:
    """A client that writes raw bytes and reads raw lines, to test the wire itself."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock  # the stdlib socket, for non-blocking peeks
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.buffer = b""

    @classmethod
    async def unix(cls, path: str) -> Raw:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.setblocking(False)
        return cls(sock)

    @classmethod
    async def tcp(cls, address: str) -> Raw:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)))
        sock.setblocking(False)
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(self, method: str, params: Any = None, msg_id: Any = 1) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(json.dumps(message).encode() + b"\n")

    async def line(self) -> bytes:
        """The next line; AssertionError on end of stream."""
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            assert data, f"connection closed; unterminated data {self.buffer[:200]!r}"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    async def recv(self) -> Any:
        return json.loads(await self.line())

    async def call(self, method: str, params: Any = None, msg_id: Any = 1) -> Any:
        await self.request(method, params, msg_id)
        return await self.recv()

    async def closed(self) -> bytes:
        """Read to end of stream; return whatever arrived before it."""
        rest = self.buffer
        self.buffer = b""
        while True:
            try:
                data = await self.stream.receive_some()
            except trio.BrokenResourceError:
                return rest
            if not data:
                return rest
            rest += data

    def nothing_pending(self) -> bool:
        """True if no byte is waiting to be read (call once all tasks are blocked)."""
        if self.buffer:
            return False
        try:
            return not self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) and False
        except BlockingIOError:
            return True

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str], Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_(path: str) -> Raw:
        raw = await (Raw.tcp(path) if ":" in path else Raw.unix(path))
        opened.append(raw)
        return raw

    yield open_
    for raw in opened:
        await raw.aclose()
