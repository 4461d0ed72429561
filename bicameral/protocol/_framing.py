"""Newline-delimited JSON: one UTF-8 JSON value per line.

The decoder works on chunks as they arrive from the socket: each chunk is
appended to a buffer once and searched for newlines with ``bytes.find`` from
where the previous search stopped, so a large frame arriving in many small
pieces costs linear time and no Python-level work per byte.

Values are parsed with orjson, which is several times faster than the stdlib
on the small messages this protocol carries. orjson departs from the stdlib
in two ways that matter here: it refuses some valid input (lone surrogate
escapes), which is then parsed again with the stdlib, and it silently turns
integers beyond 64 bits into floats, so a frame with a run of 20 or more
digits (the only way to spell such an integer; one ``re.search``, in C)
goes to the stdlib directly and a huge request id comes back exact.
Anything neither parser accepts is a parse error, never a crash.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

__all__ = ["EncodeError", "FrameDecoder", "FrameTooLarge", "ParseError", "decode", "encode"]


class FrameTooLarge(Exception):
    """More than the frame limit arrived without a newline."""


class ParseError(ValueError):
    """A frame is not one valid UTF-8 JSON value."""


class EncodeError(ValueError):
    """A value cannot be written as JSON."""


class FrameDecoder:
    """Cuts a byte stream into lines.

    ``feed(data)`` appends a chunk; ``next_frame()`` returns the next complete
    line (without its ``\\n`` or ``\\r\\n``), ``None`` when no complete line is
    buffered, and raises `FrameTooLarge` as soon as the line being received is
    longer than ``max_frame``. Blank lines are returned too (as empty or
    whitespace-only bytes); the caller skips them. ``take_buffered()`` hands
    over whatever has not been returned yet, for a connection that stops
    speaking line-delimited JSON.
    """

    __slots__ = ("_buf", "_max_frame", "_scanned")

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame
        # Bytes of _buf already searched without finding a newline.
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def set_max_frame(self, max_frame: int) -> None:
        """Change the longest line accepted from now on (a TCP client that authenticated)."""
        self._max_frame = max_frame

    def has_partial(self) -> bool:
        """Whether part of a line has arrived without its newline."""
        return bool(self._buf)

    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        buf = self._buf
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max_frame:
                raise FrameTooLarge
            return None
        if end > self._max_frame:
            raise FrameTooLarge
        frame = bytes(buf[:end])
        # Deleting from the front of a bytearray is O(1) in CPython.
        del buf[: end + 1]
        self._scanned = 0
        if frame.endswith(b"\r"):
            frame = frame[:-1]
        return frame

    def take_buffered(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    # As orjson does: a number beyond a double's range cannot be represented
    # (nor written back), so it is refused rather than turned into inf.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


_LONG_NUMBER = re.compile(rb"[0-9]{20}")


def decode(frame: bytes) -> Any:
    """Parse one frame; raise `ParseError` for anything that is not a JSON value."""
    if _LONG_NUMBER.search(frame) is None:
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(
            frame.decode("utf-8"), parse_constant=_reject_constant, parse_float=_parse_float
        )
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and json.JSONDecodeError are ValueErrors; the
        # stdlib's parser raises RecursionError on very deep nesting.
        raise ParseError(str(exc)) from None


def encode(value: Any) -> bytes:
    """Compact JSON followed by a newline; raise `EncodeError` if it cannot be written."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError: big ints, surrogates, non-str keys...
        pass
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(str(exc)) from None
    return text.encode("ascii") + b"\n"
