"""A level-triggered readiness set the protocol's poller keeps (Linux: epoll).

Only where ``epoll`` exists: elsewhere `event_poll` returns ``None`` and each
connection's reader waits on its own socket, which is correct everywhere
and only costs a registration per wait.
"""

from __future__ import annotations

import sys
from typing import Protocol

from bicameral.platform._os import CURRENT, Platform

__all__ = ["READABLE", "EventPoll", "event_poll", "has_event_poll"]

READABLE = 0x001  # EPOLLIN


class EventPoll(Protocol):
    def register(self, fd: int, eventmask: int = ...) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None = ..., maxevents: int = ...) -> list[tuple[int, int]]: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def has_event_poll(platform: Platform = CURRENT) -> bool:
    """Whether `event_poll` gives one: Linux only."""
    return platform.linux


def event_poll() -> EventPoll | None:
    """A new epoll, or ``None`` where there is none."""
    if sys.platform == "linux":
        import select

        return select.epoll()
    return None
