"""The SDK's message streams over an upstream server's stdin/stdout pipes.

The SDK's own `stdio_client` spawns the server itself (with
`anyio.open_process`), which cannot give it the parent-death signal (see
`bicameral.supervisor.open_process_group`). So the adapter spawns the server
with `open_process_group` and hands the SDK's `JSONRPCDispatcher` these two
small objects instead. They do the work inline, with no pump tasks and no
memory streams in between: the dispatcher's read loop parses each line as it
pulls it, and a send writes the line before it returns. That keeps two task
switches per message off the `tools/call` path.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

__all__ = ["PipeReadStream", "PipeWriteStream"]

_READ_SIZE = 65536


class PipeReadStream:
    """Newline-delimited JSON-RPC messages read from a pipe, as `SessionMessage`s.

    A line that is not a JSON-RPC message is handed on as the exception it
    raised (the SDK's stdio transport does the same; the session logs it).
    End of file ends the iteration, which the dispatcher treats as the
    connection closing.
    """

    def __init__(self, stream: ByteReceiveStream, on_eof: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._buffer = b""
        self._lines: collections.deque[bytes] = collections.deque()
        self._eof = False
        self._on_eof = on_eof

    async def receive(self) -> SessionMessage | Exception:
        while not self._lines:
            if self._eof:
                raise anyio.EndOfStream
            try:
                chunk = await self._stream.receive(_READ_SIZE)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._eof = True
                if self._on_eof is not None:
                    self._on_eof()
                raise anyio.EndOfStream from None
            lines = (self._buffer + chunk).split(b"\n")
            self._buffer = lines.pop()
            self._lines.extend(line for line in lines if line.strip())
        line = self._lines.popleft()
        try:
            return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
        except ValueError as exc:
            return exc

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        # The pipe belongs to the process context; it closes it.
        self._eof = True
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class PipeWriteStream:
    """Writes each `SessionMessage` as one JSON line to a pipe, in send order."""

    def __init__(self, stream: ByteSendStream) -> None:
        self._stream = stream
        self._lock = anyio.Lock()
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        # A send that blocks on a full pipe must not interleave with another.
        async with self._lock:
            await self._stream.send(data)

    async def aclose(self) -> None:
        self._closed = True
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()
