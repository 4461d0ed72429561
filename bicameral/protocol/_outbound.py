"""`Outbound`: the requests one side of a `Peer` sent, waiting for their answers.

Each request gets its own integer id, so many callers share one stream
without collisions. The reader hands each answer (`on_response`) and each
progress notification (`on_progress`) to the request's `_Waiter`; the
requesting task itself delivers the progress to its ``on_progress``
(`wait`), in order and before the answer, so progress never overtakes the
answer. When the stream ends, `close` wakes every waiter with `PeerClosed`.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from bicameral.protocol._burst import BurstLog
from bicameral.protocol._errors import PeerClosed, RPCError

__all__ = ["MAX_PROGRESS", "Outbound", "ProgressFn", "valid_id"]

logger = logging.getLogger("bicameral.protocol.peer")

#: ``await on_progress(progress, total, message)`` for an outbound request.
ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]

#: Progress notifications kept for one outbound request while its task catches up.
MAX_PROGRESS = 64

_PENDING = object()
_CLOSED = object()


def valid_id(value: Any) -> bool:
    """An id a request can have: a string or a number (not a bool)."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Waiter:
    """One request sent: its answer once it came, and its progress not yet delivered."""

    __slots__ = ("event", "on_progress", "outcome", "progress")

    def __init__(self, on_progress: ProgressFn | None) -> None:
        self.event = trio.Event()  # set by the answer, and by progress to deliver
        self.outcome: Any = _PENDING
        self.on_progress = on_progress
        self.progress: collections.deque[tuple[float, float | None, str | None]] = (
            collections.deque(maxlen=MAX_PROGRESS)
        )

    @property
    def answered(self) -> bool:
        """Whether the answer came (or the stream closed)."""
        return self.outcome is not _PENDING

    def result(self) -> Any:
        """The answer's result; raises `RPCError` for an error answer, `PeerClosed` if none came."""
        outcome = self.outcome
        if outcome is _CLOSED:
            raise PeerClosed()
        if "error" in outcome:
            raise RPCError.from_dict(outcome["error"])
        return outcome.get("result")


class Outbound:
    """The requests in flight from this side of one stream (see the module docstring)."""

    __slots__ = ("_name", "_next_id", "_odd_ids", "_pending")

    def __init__(self, name: str) -> None:
        self._name = name
        self._next_id = 0
        self._pending: dict[Any, Waiter] = {}
        self._odd_ids = BurstLog(logger, logging.WARNING)

    def start(
        self, method: str, params: Mapping[str, Any] | None, on_progress: ProgressFn | None
    ) -> tuple[int, dict[str, Any], Waiter]:
        """A new request: its id, its message (to send), and its waiter (to `wait` on)."""
        self._next_id += 1
        rid = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None or on_progress is not None:
            out = dict(params) if params is not None else {}
            if on_progress is not None:
                out["_meta"] = {**(out.get("_meta") or {}), "progressToken": rid}
            message["params"] = out
        waiter = Waiter(on_progress)
        self._pending[rid] = waiter
        return rid, message, waiter

    def finish(self, rid: int) -> None:
        """The request's caller is done with it (answered or not)."""
        self._pending.pop(rid, None)

    @staticmethod
    async def wait(waiter: Waiter) -> None:
        """Wait for the answer, delivering the request's progress meanwhile, in order."""
        while True:
            await waiter.event.wait()
            while waiter.progress:
                progress, total, note = waiter.progress.popleft()
                assert waiter.on_progress is not None
                try:
                    await waiter.on_progress(progress, total, note)
                except Exception:
                    logger.exception("a progress callback raised")
            if waiter.outcome is not _PENDING:
                return
            waiter.event = trio.Event()

    def on_response(self, message: dict[str, Any]) -> None:
        """A response arrived: wake its request's caller."""
        rid = message.get("id")
        waiter = self._pending.get(rid) if valid_id(rid) else None
        if waiter is None:
            self._odd_ids.note(f"{self._name} answered with an id no request has: {rid!r:.100}")
        elif waiter.outcome is _PENDING:
            waiter.outcome = message
            waiter.event.set()

    def on_progress(self, params: dict[str, Any]) -> bool:
        """A progress notification: True when it was for a request here that takes progress."""
        token = params.get("progressToken")
        waiter = self._pending.get(token) if valid_id(token) else None
        if waiter is None or waiter.on_progress is None:
            return False
        progress: Any = params.get("progress")
        if _is_number(progress):
            total: Any = params.get("total")
            note = params.get("message")
            # Delivered by the requesting task (see `wait`): in order, and
            # before the response.
            waiter.progress.append(
                (
                    float(progress),
                    float(total) if _is_number(total) else None,
                    note if isinstance(note, str) else None,
                )
            )
            waiter.event.set()
        return True

    def close(self) -> None:
        """The stream ended: every request still waiting fails with `PeerClosed`."""
        for waiter in self._pending.values():
            if waiter.outcome is _PENDING:
                waiter.outcome = _CLOSED
            waiter.event.set()
