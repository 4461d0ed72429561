"""`RestartIntensity`: OTP's ``intensity`` and ``period``, counted per supervisor."""

from __future__ import annotations

import collections

import anyio

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """The restarts a supervisor made lately, against its limit.

    More than `max_restarts` restarts within `max_seconds` and the supervisor
    gives up. A restart is counted when the crash happens (`add`), on the
    event loop's clock.
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._times: collections.deque[float] = collections.deque()

    def add(self) -> bool:
        """Count one restart now; False when that exceeds the intensity.

        OTP's ``add_restart/1``: keep the restarts no older than the period
        (``Now - T =< Period``) and fail when more than ``MaxR`` remain.
        """
        now = anyio.current_time()
        times = self._times
        times.append(now)
        horizon = now - self.max_seconds
        while times[0] < horizon:
            times.popleft()
        return len(times) <= self.max_restarts

    def take_back(self) -> None:
        """Uncount the restart `add` just refused (a delayed retry goes instead).

        RabbitMQ's ``supervisor2`` does the same for ``{permanent, Delay}``:
        it goes back to the restarts it had, or it would never restart later.
        """
        if self._times:
            self._times.pop()

    def clear(self) -> None:
        self._times.clear()
