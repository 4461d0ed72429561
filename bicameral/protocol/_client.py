"""An async JSON-RPC client on anyio, so it runs under Trio and asyncio alike.

There is no background reader task, so a client needs no task group and can
be created and closed anywhere: whichever caller is waiting for a response
reads the socket for everyone (the "leader"), hands each response to the
caller it belongs to, and steps down once its own has arrived, waking the
others so one of them takes over. Concurrent calls on one client are
therefore matched by id and may complete in any order.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.abc

from bicameral.protocol._errors import RPCError
from bicameral.protocol._framing import FrameDecoder, ParseError, decode, encode

__all__ = ["AsyncClient"]

_RECV_SIZE = 65536
_MAX_FRAME = 1 << 30


class _Waiter:
    __slots__ = ("done", "error", "event", "result")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class AsyncClient:
    """A connection to a protocol server.

    ``async with await AsyncClient.connect_unix(path) as client:`` or
    ``client = await AsyncClient.connect_unix(path)`` ... ``await client.aclose()``.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(_MAX_FRAME)
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._leader: _Waiter | None = None
        self._send_lock = anyio.Lock()
        self._closed_error: BaseException | None = None

    @classmethod
    async def connect_unix(cls, path: str) -> AsyncClient:
        return cls(await anyio.connect_unix(path))

    @classmethod
    async def connect_tcp(cls, address: str, token: str) -> AsyncClient:
        """Connect to ``"host:port"`` and present ``token`` with ``system.attach``."""
        host, _, port = address.rpartition(":")
        client = cls(await anyio.connect_tcp(host.strip("[]"), int(port)))
        try:
            await client.call("system.attach", {"token": token, "mode": "rpc"})
        except BaseException:
            await client.aclose()
            raise
        return client

    async def call(self, method: str, params: Any = None) -> Any:
        """Send a request and return its result; raise `RPCError` for an error response.

        Raises `ConnectionError` if the connection closes first.
        """
        msg_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            request["params"] = params
        waiter = _Waiter()
        self._waiters[msg_id] = waiter
        try:
            await self._send(encode(request))
            await self._wait(waiter)
        finally:
            del self._waiters[msg_id]
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def notify(self, method: str, params: Any = None) -> None:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            request["params"] = params
        await self._send(encode(request))

    async def aclose(self) -> None:
        if self._closed_error is None:
            self._closed_error = ConnectionError("client closed")
        await self._stream.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, data: bytes) -> None:
        if self._closed_error is not None:
            raise ConnectionError("connection closed") from self._closed_error
        async with self._send_lock:
            await self._stream.send(data)

    async def _wait(self, waiter: _Waiter) -> None:
        while not waiter.done:
            if self._closed_error is not None:
                raise ConnectionError("connection closed") from self._closed_error
            if self._leader is None:
                self._leader = waiter
                try:
                    while not waiter.done:
                        await self._read_some()
                finally:
                    self._leader = None
                    for other in self._waiters.values():
                        other.event.set()
            else:
                await waiter.event.wait()
                if not waiter.done:
                    waiter.event = anyio.Event()

    async def _read_some(self) -> None:
        try:
            data = await self._stream.receive(_RECV_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._fail_all(exc)
            return
        self._decoder.feed(data)
        while (frame := self._decoder.next_frame()) is not None:
            if not frame.strip():
                continue
            try:
                message = decode(frame)
            except ParseError as exc:
                self._fail_all(exc)
                return
            for response in message if type(message) is list else [message]:
                self._deliver(response)

    def _deliver(self, response: Any) -> None:
        if type(response) is not dict:
            return
        waiter = self._waiters.get(response.get("id"))  # type: ignore[arg-type]
        if waiter is None:
            if response.get("id") is None and "error" in response:
                # Not tied to a request (e.g. frame too large): fails everyone.
                self._fail_all(RPCError.from_dict(response["error"]))
            return  # a notification, or an answer nobody waits for any more
        if "error" in response:
            waiter.error = RPCError.from_dict(response["error"])
        else:
            waiter.result = response.get("result")
        waiter.done = True
        waiter.event.set()

    def _fail_all(self, exc: BaseException) -> None:
        if self._closed_error is None:
            self._closed_error = exc
        for waiter in self._waiters.values():
            if not waiter.done:
                waiter.error = (
                    exc
                    if isinstance(exc, RPCError)
                    else ConnectionError(f"connection lost: {exc!r}")
                )
                waiter.done = True
                waiter.event.set()
