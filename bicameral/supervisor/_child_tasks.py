"""`ChildTasks`: a supervisor's children as tasks, started, run, stopped.

Every child runs in one task of the supervisor's task group, inside its own
cancel scope. A ONE_FOR_ONE restart happens *in that task*, in a loop: no new
task, no message to the supervisor, no scheduler round trip when there is no
backoff. That is what keeps crash-to-restarted in microseconds. What an exit
means (restart, give up, retry later) is the next layer's decision
(`bicameral.supervisor._restarts`), asked through `_after_exit`.

Readiness is the child calling ``task_status.started(value)`` on an object the
supervisor hands it (`_Status`), not `nursery.start`: the child task is
spawned once, in its final task group, and the same object works for
in-place restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from bicameral.supervisor._changes import Changes
from bicameral.supervisor._child import _MISSING, ChildHandle, StopFlag, _current, _Waiter
from bicameral.supervisor._errors import ChildStartError, RestartIntensityExceeded
from bicameral.supervisor._spec import ChildSpec, accepts_task_status
from bicameral.supervisor._tasks import Scope, TaskGroup

__all__ = ["ChildTasks", "logger"]

logger = logging.getLogger("bicameral.supervisor")


class _Status:
    """The ``task_status`` a child receives; works for every run of the child."""

    __slots__ = ("_child", "_done")

    def __init__(self, child: ChildHandle) -> None:
        self._child = child
        self._done = False

    def started(self, value: Any = None) -> None:
        if self._done:
            raise RuntimeError("task_status.started() called twice")
        self._done = True
        child = self._child
        child.value = value
        child.state = "running"
        child.started_at = time.time()
        child._up_since = anyio.current_time()
        waiter = child._waiter
        if waiter is not None:
            child._waiter = None
            waiter.ok = True
            waiter.event.set()


class ChildTasks:
    """The children of one supervisor, each in a task: the base `Supervisor` builds on.

    Holds the child records (`_children` in start order, `_by_name`), spawns
    and stops children's tasks and runs their targets. `_after_exit` decides
    what a child's unrequested exit means; the subclass implements it.
    """

    def __init__(self, name: str, children: Any) -> None:
        self.name = name
        self._changes = Changes()
        self._children: list[ChildHandle] = []
        self._by_name: dict[str, ChildHandle] = {}
        for spec in children:
            self._add(spec)
        self._tg: TaskGroup | None = None
        self._scope_class: Callable[[], Scope] = anyio.CancelScope
        self._cancelled_exc: type[BaseException] = BaseException

    # ------------------------------------------------------------- the records

    def _add(self, spec: ChildSpec, position: int | None = None) -> ChildHandle:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"expected a ChildSpec, not {spec!r}")
        if spec.name in self._by_name:
            raise ValueError(f"duplicate child name {spec.name!r} in supervisor {self.name!r}")
        child = ChildHandle(spec, self._changes)
        if position is None:
            self._children.append(child)
        else:
            self._children.insert(position, child)
        self._by_name[spec.name] = child
        self._changes.touch()
        return child

    def _remove(self, child: ChildHandle) -> None:
        if self._by_name.get(child.spec.name) is child:
            del self._by_name[child.spec.name]
            self._children.remove(child)
            self._changes.touch()

    # ------------------------------------------------------- start, stop, run

    def _spawn(self, child: ChildHandle, waiter: _Waiter | None, retry: float = 0.0) -> None:
        """Start `child`'s task: at once, or as a retry in `retry` seconds (`_retry_wait`)."""
        assert self._tg is not None
        child._gen += 1
        child._alive = True
        child._deliberate = False
        child._waiter = waiter
        child._up_since = None
        if not retry:
            child.state = "starting"
        self._tg.start_soon(self._child_task, child, child._gen, retry, name=child.spec.name)

    async def _start(self, child: ChildHandle) -> None:
        """Start `child` and wait for its readiness; `ChildStartError` if it fails."""
        if child.spec.kind == "supervisor" or accepts_task_status(child.spec.target):
            waiter = _Waiter()
            self._spawn(child, waiter)
            await waiter.event.wait()
            if not waiter.ok:
                # Cancelled from outside while it started: that is no start failure.
                await anyio.lowlevel.checkpoint_if_cancelled()
                child.state = "failed"
                raise ChildStartError(self.name, child.spec.name, waiter.error) from waiter.error
        else:
            # "Started once scheduled": OTP has no readiness for these either.
            self._spawn(child, None)
            child.state = "running"
            child.started_at = time.time()
            child._up_since = anyio.current_time()

    async def _stop_child(self, child: ChildHandle) -> None:
        """Stop one child: set `stopping`, wait its grace, then cancel (OTP's ``shutdown``)."""
        if not child._alive:
            if child.state != "failed":
                child.state = "stopped"
            await anyio.lowlevel.checkpoint()
            return
        child._deliberate = True
        done = child._done = anyio.Event()
        grace = child.spec.grace
        retrying = child.retry_at is not None
        backing_off = retrying or child.state == "backoff"  # no target runs: nothing to wait for
        child.state = "stopping"
        if grace > 0 and not backing_off:
            child.stopping.set()
            with anyio.move_on_after(grace):
                await done.wait()
        if child._alive:
            assert child._scope is not None
            child._scope.cancel()
            await done.wait()
        child._done = None
        # A failed child stays failed (its last_exit says why); its retry is off.
        child.state = "failed" if retrying else "stopped"

    async def _child_task(self, child: ChildHandle, gen: int, retry: float = 0.0) -> None:
        """A child's task: run the target; ONE_FOR_ONE restarts loop right here.

        With `retry`, the child is ``failed`` and this first waits that long
        to try it again (`_retry_wait`); a retry decided by `_after_exit`
        waits here too, so that stopping the child ends the wait at once.
        """
        _current.set(child)
        scope = child._scope = self._scope_class()
        try:
            with scope:
                delay = 0.0
                if retry and not await self._retry_wait(child, retry):
                    return
                while True:
                    if delay > 0:
                        child.state = "backoff"
                        await anyio.sleep(delay)
                    again = await self._run_once(child)
                    if again is None:
                        break
                    if child.retry_at is None:
                        delay = again
                    elif await self._retry_wait(child, again):
                        delay = 0.0
                    else:
                        break
                    # A full scheduling point per restart: a child that fails
                    # without ever awaiting cannot starve the loop (a restart
                    # storm within the intensity), outside deadlines fire, and
                    # on outside cancellation this raises instead of running
                    # the target again.
                    await anyio.lowlevel.checkpoint()
        finally:
            if child._gen == gen:
                child._alive = False
                child._scope = None
                child.retry_at = None
                if child._done is not None:
                    child._done.set()
                waiter = child._waiter
                if waiter is not None:  # cancelled before it could start
                    child._waiter = None
                    waiter.event.set()

    async def _run_once(self, child: ChildHandle) -> float | None:
        """Run the target once; return a delay to restart in place, or None to end."""
        spec = child.spec
        if child.stopping.is_set():
            child.stopping = StopFlag()  # each run of the child gets an unset flag
        child.value = _MISSING
        error: BaseException | None = None
        shutdown = False
        try:
            if spec.kind == "supervisor":
                try:
                    await spec.target.run(task_status=_Status(child))
                except RestartIntensityExceeded as exc:
                    # OTP: a supervisor that gives up exits with reason
                    # `shutdown`, which a TRANSIENT entry does not restart.
                    shutdown = exc.supervisor == spec.target.name
                    raise
            elif accepts_task_status(spec.target):
                await spec.target(*spec.args, task_status=_Status(child))
            else:
                if child.state != "running":  # an in-place restart
                    child.state = "running"
                    child.started_at = time.time()
                    child._up_since = anyio.current_time()
                await spec.target(*spec.args)
        except Exception as exc:
            error = exc
        except BaseException as exc:
            # Cancellation (maybe grouped by a nursery inside the child), or
            # KeyboardInterrupt and friends: recorded, never restarted, re-raised.
            if self._is_cancellation(exc):
                self._record_exit(child, "cancelled", None)
            else:
                self._record_exit(child, "error", exc)
            raise
        if error is None and child.state == "starting" and child.value is _MISSING:
            # Returned without task_status.started(): it never became ready,
            # which is a failure (a start failure, or on a restart a crash).
            error = RuntimeError(f"child {spec.name!r} returned before task_status.started()")
        self._record_exit(child, "error" if error is not None else "normal", error)
        waiter = child._waiter
        if waiter is not None:
            # Its starter decides (initial start fails; a group restart counts a crash).
            child._waiter = None
            child.state = "failed"
            waiter.error = error
            waiter.event.set()
            return None
        if child._deliberate:
            return None
        return self._after_exit(child, error, shutdown)

    def _after_exit(
        self, child: ChildHandle, error: BaseException | None, shutdown: bool
    ) -> float | None:
        """What an unrequested exit means: a delay to restart in place after, or None.

        With ``child.retry_at`` set, the child is ``failed`` and the delay is
        its retry's (`_retry_wait`), not a backoff.
        """
        raise NotImplementedError

    async def _retry_wait(self, child: ChildHandle, delay: float) -> bool:
        """Wait `delay`, then retry `child`; True to run it again in this task."""
        raise NotImplementedError

    def _is_cancellation(self, exc: BaseException) -> bool:
        if isinstance(exc, self._cancelled_exc):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return exc.split(self._cancelled_exc)[1] is None
        return False

    def _record_exit(self, child: ChildHandle, reason: str, error: BaseException | None) -> None:
        child.last_exit = {
            "reason": reason,
            "error": repr(error) if error is not None else None,
            "at": time.time(),
        }
        if error is not None:
            # One line at ERROR, the traceback at INFO: an application that
            # has not configured logging (Python's last-resort handler shows
            # WARNING and up) sees each crash as one readable line, and a
            # configured one (the daemon logs INFO) keeps the traceback.
            if logger.isEnabledFor(logging.ERROR):
                logger.error(
                    "supervisor %r: child %r crashed: %r", self.name, child.spec.name, error
                )
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "supervisor %r: child %r crash traceback",
                    self.name,
                    child.spec.name,
                    exc_info=error,
                )
        elif logger.isEnabledFor(logging.INFO):
            logger.info("supervisor %r: child %r exited (%s)", self.name, child.spec.name, reason)
