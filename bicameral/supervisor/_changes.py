"""`Changes`: what wakes `Supervisor.wait_until` when something in a tree changes."""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["Changes"]


class Changes:
    """The change notifications of one supervisor, and of the tree above it.

    Each supervisor owns one; each of its `ChildHandle` records holds it and
    calls `touch` when its ``state`` or ``restarts`` changes, as does the
    supervisor when a child is added or removed. A nested supervisor links
    its own to its parent's (`parent`), so a change anywhere below wakes
    waiters at every level above.

    Nothing is made until someone waits: `event` stays ``None`` and `touch`
    costs one attribute test, which is what the restart path pays.
    """

    __slots__ = ("event", "parent")

    def __init__(self) -> None:
        self.event: anyio.Event | None = None  # made by wait_until, set by touch
        self.parent: Changes | None = None  # the parent supervisor's, while we run under it

    def touch(self) -> None:
        """Something a `wait_until` predicate may read changed: wake the waiters."""
        changes: Changes | None = self
        while changes is not None:
            event = changes.event
            if event is not None:
                changes.event = None
                event.set()
            changes = changes.parent

    async def wait_until(self, predicate: Callable[[], object]) -> None:
        """Return once ``predicate()`` is true, re-checking it after every `touch`."""
        while not predicate():
            if self.event is None:
                self.event = anyio.Event()
            await self.event.wait()
