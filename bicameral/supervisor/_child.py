"""A child's live record, and `current_child()`, the child's view of it."""

from __future__ import annotations

import contextvars
import json
import time
from typing import Any

import anyio
import anyio.lowlevel

from bicameral.supervisor._changes import Changes
from bicameral.supervisor._spec import ChildSpec
from bicameral.supervisor._tasks import Scope

__all__ = ["ChildHandle", "StopFlag", "current_child"]

_MISSING: Any = object()
_REPORTABLE = frozenset(("running", "starting", "backoff", "failed"))


class StopFlag:
    """``current_child().stopping``: set when the supervisor asks the child to stop.

    Once set, the child has its spec's `shutdown` seconds to return before it
    is cancelled. It stays set for the rest of that run of the child; a
    restarted child gets a fresh, unset flag.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None  # made on first wait(): most are never awaited

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        """Return once the flag is set (at once, after a checkpoint, if it is)."""
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        return f"<StopFlag set={self._set}>"


class ChildHandle:
    """One child of a supervisor, as the supervisor tracks it.

    A child sees its own handle through `current_child()`. Public, read-only
    attributes: `name`, `spec`, `restarts` (how often it was restarted: by
    the supervisor, an operator's `restart_child` included), `stopping` (a `StopFlag`),
    `state` (as in the snapshot), `started_value` (the value the child
    passed to ``task_status.started()``, or ``None``) and `retry_at` (for a
    ``failed`` child with `ChildSpec.retry_after`: when it is tried again,
    as ``time.time()``; else ``None``).
    """

    __slots__ = (
        "_alive",
        "_backoff_n",
        "_changes",
        "_deliberate",
        "_done",
        "_gen",
        "_restarts",
        "_retry_n",
        "_scope",
        "_state",
        "_terminated",
        "_up_since",
        "_waiter",
        "last_exit",
        "retry_at",
        "spec",
        "started_at",
        "stopping",
        "value",
    )

    def __init__(self, spec: ChildSpec, changes: Changes) -> None:
        self.spec = spec
        self._changes = changes  # its supervisor's: a change here wakes `wait_until`
        self._state = "stopped"
        self._restarts = 0
        self.started_at: float | None = None
        self.last_exit: dict[str, Any] | None = None
        self.value: Any = _MISSING
        self.stopping = StopFlag()
        self._alive = False  # its task is running (target, or backoff between runs)
        self._deliberate = False  # the supervisor is stopping it: no restart on exit
        self._terminated = False  # terminate_child: stays down until restart_child
        self._done: anyio.Event | None = None  # set when its task ends; only while stopping
        self._scope: Scope | None = None
        self._gen = 0  # bumped per task, so stale crash reports are ignored
        self._backoff_n = 0
        self._up_since: float | None = None  # monotonic time it last became running
        self._waiter: _Waiter | None = None
        self.retry_at: float | None = None  # failed, retried then (`time.time()`)
        self._retry_n = 0  # consecutive failures retried (`ChildSpec.retry_after`)

    @property
    def name(self) -> str:
        return self.spec.name

    # `state` and `restarts` tell the supervisor when they change, so that
    # `Supervisor.wait_until` wakes on an event instead of polling. The cost
    # on the restart path of a root's child is two attribute tests while
    # nobody waits; in a subtree, a walk up to the root.

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        changes = self._changes
        if changes.event is not None or changes.parent is not None:
            changes.touch()

    @property
    def restarts(self) -> int:
        return self._restarts

    @restarts.setter
    def restarts(self, value: int) -> None:
        self._restarts = value
        changes = self._changes
        if changes.event is not None or changes.parent is not None:
            changes.touch()

    @property
    def started_value(self) -> Any:
        return None if self.value is _MISSING else self.value

    def report(
        self,
        *,
        state: str | None = None,
        value: Any = _MISSING,
        error: str | None = None,
        at: float | None = None,
    ) -> None:
        """Show what a child is doing, beyond its state, in its snapshot entry.

        For a child whose readiness is not the whole story: an MCP server's
        subtree shows its server's live status (pid, tools, health) this way.

        - ``state``: ``running``, ``starting``, ``backoff`` or ``failed``;
        - ``value``: replaces ``started_value`` (left out of the snapshot
          when it is not JSON-serialisable, like any started value);
        - ``error``: recorded as ``last_exit`` (reason ``error``) at ``at``
          (default: now).

        The supervisor's own view wins: while it is starting, stopping or has
        stopped the child, or waits to retry it, a reported ``state`` is ignored (``value`` and
        ``error`` are still recorded). Nothing here changes what the
        supervisor does: restart decisions and intensity follow the child's
        real exits only.
        """
        if value is not _MISSING:
            self.value = value
        if error is not None:
            self.last_exit = {
                "reason": "error",
                "error": error,
                "at": time.time() if at is None else at,
            }
        if state is not None:
            if state not in _REPORTABLE:
                raise ValueError(
                    f"a child can report {', '.join(sorted(_REPORTABLE))}, not {state!r}"
                )
            if self.state in _REPORTABLE and not self.stopping.is_set() and self.retry_at is None:
                self.state = state

    def __repr__(self) -> str:
        return f"<ChildHandle {self.spec.name!r} state={self.state} restarts={self.restarts}>"


class _Waiter:
    """Someone (start, group restart, start_child) waits for a child's readiness."""

    __slots__ = ("error", "event", "ok")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ok = False
        self.error: BaseException | None = None


def json_or_missing(value: Any) -> Any:
    """`value` when it survives `json.dumps`, else the missing marker."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return _MISSING
    return value


_current: contextvars.ContextVar[ChildHandle] = contextvars.ContextVar(
    "bicameral.supervisor.current_child"
)


def current_child() -> ChildHandle:
    """The `ChildHandle` of the supervised child this task belongs to.

    Works in the child's own task and in tasks it starts (contextvars are
    inherited). Inside a nested supervisor's children it is their own
    handle, not the subtree's.

    Raises:
      RuntimeError: if called outside any supervised child.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("current_child() called outside a supervised child") from None
