"""`Wire`: the byte stream under a `Peer`, whatever flavour it comes in.

A Trio stream, an anyio stream, the protocol's own `FdReader` / `FdWriter`,
or a reader and a writer apart: `Wire` gives them one face, with one
meaning for the end of the stream (``b""`` in, `BrokenPipeError` out).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import trio

__all__ = ["Wire"]

logger = logging.getLogger("bicameral.protocol.peer")

_READ_SIZE = 65536


class Wire:
    """A byte stream (Trio or anyio flavoured), or a reader and a writer apart.

    `receive` returns ``b""`` at the end, whatever the stream raises for it;
    `send` raises `OSError`-derived `BrokenPipeError` once the other side is
    gone, whatever the stream raised.
    """

    def __init__(self, stream: Any, out: Any = None) -> None:
        self._stream = stream
        self._out = out
        writer = out if out is not None else stream
        recv = getattr(stream, "receive_some", None) or stream.receive
        self._recv: Callable[[int], Awaitable[bytes]] = recv
        self._send: Callable[[bytes], Awaitable[None]] = (
            getattr(writer, "send_all", None) or writer.send
        )
        self._try_send: Callable[[bytes], int] | None = getattr(writer, "try_send", None)
        self.closed = False

    def try_send(self, data: bytes) -> int:
        """Write what the stream takes now, without waiting (0 where it cannot tell).

        Raises `BrokenPipeError` once the other side is gone.
        """
        if self._try_send is None:
            return 0
        try:
            return self._try_send(data)
        except Exception as exc:
            if _is_stream_end(exc) or isinstance(exc, OSError):
                self.closed = True
                raise BrokenPipeError("the stream is closed") from exc
            raise

    async def receive(self) -> bytes:
        try:
            return await self._recv(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""
        except Exception as exc:  # anyio's EndOfStream, BrokenResourceError...
            if _is_stream_end(exc):
                return b""
            raise

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("the stream is closed")
        try:
            await self._send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise BrokenPipeError("the stream is closed") from exc
        except Exception as exc:
            if _is_stream_end(exc):
                self.closed = True
                raise BrokenPipeError("the stream is closed") from exc
            raise

    async def aclose(self) -> None:
        self.closed = True
        for stream in (self._stream, self._out):
            close = getattr(stream, "aclose", None)
            if close is not None:
                with trio.CancelScope(shield=True):
                    try:
                        await close()
                    except Exception:  # already broken: nothing to close
                        logger.debug("closing a stream failed", exc_info=True)


def _is_stream_end(exc: BaseException) -> bool:
    """Whether ``exc`` is how an anyio stream says it ended (or broke, or was closed)."""
    return isinstance(
        exc, anyio.EndOfStream | anyio.BrokenResourceError | anyio.ClosedResourceError
    )
