"""`Supervisor`: starts children in order, restarts them, gives up, stops them.

The decisions follow Erlang/OTP's ``supervisor.erl``; each place that makes
one says which part. How it is built, and why:

* Every child runs in one task of the supervisor's task group, inside its own
  cancel scope. A ONE_FOR_ONE restart happens *in that task*, in a loop: no
  new task, no message to the supervisor, no scheduler round trip when there
  is no backoff. That is what keeps crash-to-restarted in microseconds.
* Everything that touches several children (a ONE_FOR_ALL / REST_FOR_ONE
  restart, giving up, a graceful stop) runs in `run`'s own task, the
  *manager*, one event at a time, as OTP's supervisor process handles one
  message at a time. Operator calls (`start_child`...) take the same lock.
* Readiness is the child calling ``task_status.started(value)`` on an object
  the supervisor hands it, not `nursery.start`: the child task is spawned
  once, in its final task group, and the same object works for in-place
  restarts.
* Cancellation from outside reaches every child through the task group; a
  child's task re-raises it and never restarts, so the whole tree unwinds at
  once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from bicameral.supervisor._backoff import Backoff
from bicameral.supervisor._child import _MISSING, ChildHandle, StopFlag, _current, _Waiter
from bicameral.supervisor._errors import ChildStartError, RestartIntensityExceeded
from bicameral.supervisor._snapshot import child_entry, supervisor_entry
from bicameral.supervisor._spec import ChildSpec, Restart, Strategy, accepts_task_status
from bicameral.supervisor._tasks import Scope, TaskGroup, new_scope_factory, open_task_group

__all__ = ["Supervisor"]

logger = logging.getLogger("bicameral.supervisor")

# Manager events.
_GROUP = "group"  # (kind, child, gen, delay): a group restart is due
_FAIL = "fail"  # (kind, error): intensity exceeded
_STOP = "stop"  # (kind,): graceful stop requested


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


class Supervisor:
    """A supervisor: a list of children kept alive by OTP's rules.

    ``await nursery.start(sup.run)`` starts the children one at a time in list
    order and returns once all have started; a `Supervisor` can also be the
    `ChildSpec.target` of another one (a subtree). See `run` for the whole
    lifecycle and SPEC §3 for the contract.

    Args:
      name: shown in the snapshot, logs and errors.
      children: the initial child specs, in start order; names must be unique.
      strategy: see `Strategy`.
      max_restarts, max_seconds: the restart intensity (OTP's ``intensity``
        and ``period``): more than `max_restarts` restarts within
        `max_seconds` and the supervisor gives up. A restart is counted when
        the crash happens; a ONE_FOR_ALL / REST_FOR_ONE event counts once;
        operator restarts do not count.
      backoff: the per-child restart delay; the default restarts at once.
      rng: the random source for backoff jitter (for reproducible tests).

    A `Supervisor` instance is one supervisor: `run` may be called again
    after it returned (a parent restarting a subtree does so), never
    concurrently. Each `run` starts with a fresh restart history and fresh
    child records, as a new OTP supervisor process would; the child *specs*
    it starts are the current list, so children added with `start_child`
    (and not deleted) survive a restart of the subtree. Unlike OTP, where
    ``init/1`` runs again, this keeps a live-reloaded configuration intact.
    """

    _bicameral_kind = "supervisor"

    def __init__(
        self,
        name: str,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a Strategy, not {strategy!r}")
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()
        self._changed: anyio.Event | None = None  # made by wait_until, set by _touch
        self._parent: ChildHandle | None = None  # our entry in a parent, while we run as a child
        self._children: list[ChildHandle] = []
        self._by_name: dict[str, ChildHandle] = {}
        for spec in children:
            self._add(spec)
        self._st = "stopped"
        self._started_at: float | None = None
        self._runs = 0
        self._tg: TaskGroup | None = None
        self._scope_class: Callable[[], Scope] = anyio.CancelScope
        self._lock: anyio.Lock | None = None
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake: anyio.Event | None = None
        self._restart_times: collections.deque[float] = collections.deque()
        self._stopping_all = False
        self._finished: anyio.Event | None = None
        self._cancelled_exc: type[BaseException] = BaseException
        self._interrupt: anyio.Event | None = None  # set by stop() during a group backoff

    @property
    def _state(self) -> str:
        return self._st

    @_state.setter
    def _state(self, value: str) -> None:
        self._st = value
        if self._changed is not None:
            self._touch()

    def _touch(self) -> None:
        """Something a `wait_until` predicate may read changed: wake the waiters."""
        event = self._changed
        if event is not None:
            self._changed = None
            event.set()
        parent = self._parent
        if parent is not None and parent.supervisor._changed is not None:
            parent.supervisor._touch()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.strategy.value} state={self._state}>"

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> str:
        """``stopped``, ``starting``, ``running``, ``stopping`` or ``failed``."""
        return self._state

    @property
    def children(self) -> Sequence[ChildHandle]:
        """The current child records, in start order (read-only view)."""
        return tuple(self._children)

    def child(self, name: str) -> ChildHandle:
        """The record of child `name`; `KeyError` if there is none."""
        return self._by_name[name]

    async def wait_until(self, predicate: Callable[[], object]) -> None:
        """Return once ``predicate()`` is true, re-checking it after every change.

        A change is any child's (or this supervisor's) ``state`` or
        ``restarts`` changing, a child being added or removed, and the same
        anywhere in a nested supervisor below. The predicate is checked at
        once, then after each change; nothing polls, so this is exact under
        Trio's ``MockClock`` / pytest-trio's ``autojump_clock`` and costs
        nothing while it waits. Bound it with a cancel scope
        (``anyio.fail_after``) if the state might never come.

        Example::

            await sup.wait_until(lambda: sup.child("worker").restarts >= 2)
        """
        while not predicate():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the supervisor until it is stopped, gives up or is cancelled.

        1. Starts the children one at a time in list order. A target taking a
           ``task_status`` keyword must call ``task_status.started(value)``
           before the next child starts; other targets count as started once
           spawned. If a child raises or returns before `started`, the
           children already started are stopped (gracefully, reverse order)
           and `run` raises `ChildStartError`, as OTP's ``start_link`` fails.
        2. Reports ``task_status.started()``, then supervises (see
           `Strategy`, `Restart`, `Backoff`).
        3. Returns normally after `stop()`, or, when it is itself a child,
           after its ``current_child().stopping`` is set: every child is
           stopped in reverse start order, each with its own grace.
        4. Raises `RestartIntensityExceeded` (after stopping every child the
           same way) when restarts exceed the intensity.
        5. If cancelled from outside, every child is cancelled at once, none
           is restarted, and nothing it started outlives this call.

        When `run` itself runs inside a supervised child (as a subtree, or
        inside a worker that embeds a tree), that child's
        ``current_child().stopping`` also triggers step 3.

        Every child exit is logged on the ``bicameral.supervisor`` logger and
        recorded in the child's ``last_exit``.
        """
        if self._state in ("starting", "running", "stopping"):
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._reset_for_run()
        parent = _current.get(None)
        # Changes below us wake waiters on the tree above us too.
        self._parent = parent if parent is not None and parent.spec.target is self else None
        try:
            # Errors are raised after the task group has closed, so that they
            # reach the caller as themselves, not wrapped in an ExceptionGroup.
            failure: BaseException | None = None
            async with open_task_group() as tg:
                self._tg = tg
                try:
                    await self._start_initial()
                except ChildStartError as exc:
                    failure = exc
                else:
                    self._state = "running"
                    if parent is not None:
                        tg.start_soon(self._watch_parent, parent, name=f"{self.name}:stop-watch")
                    logger.info(
                        "supervisor %r: started %d children", self.name, len(self._children)
                    )
                    task_status.started()
                    failure = await self._manage()
                tg.cancel_scope.cancel()  # the stop watcher; every child is stopped already
            if failure is not None:
                raise failure
        except BaseException:
            if self._state != "failed":
                self._state = "stopped"
            raise
        else:
            self._state = "stopped"
        finally:
            self._tg = None
            self._parent = None
            for child in self._children:
                if child.state not in ("stopped", "failed"):
                    child.state = "stopped"
            assert self._finished is not None
            self._finished.set()

    async def stop(self) -> None:
        """Stop every child gracefully (reverse start order) and end `run`.

        Returns once `run` has returned. A no-op when it is not running.
        """
        if self._state not in ("starting", "running", "stopping") or self._finished is None:
            await anyio.lowlevel.checkpoint()
            return
        finished = self._finished
        self._post((_STOP,))
        await finished.wait()

    async def start_child(self, spec: ChildSpec) -> dict[str, Any]:
        """Add `spec` as the last child and start it (OTP's ``start_child``).

        Waits for its readiness like the initial start. Returns its snapshot
        entry.

        Raises:
          ValueError: a child of that name exists.
          ChildStartError: it failed before ``task_status.started()``; it is
            not added.
          RuntimeError: the supervisor is not running.
        """
        async with self._operator_lock():
            if spec.name in self._by_name:
                raise ValueError(f"supervisor {self.name!r} already has a child {spec.name!r}")
            return await self._add_and_start(spec)

    async def restart_child(self, name: str) -> dict[str, Any]:
        """Stop child `name` gracefully if it runs, then start it again.

        An operator's restart: it counts in the child's ``restarts`` but not
        toward the intensity limit, and it also starts a child that is
        stopped, failed or was terminated with `terminate_child`. Returns the
        child's snapshot entry.

        Raises:
          KeyError: no such child.
          ChildStartError: it failed before ``task_status.started()``; it
            stays stopped.
          RuntimeError: the supervisor is not running.
        """
        async with self._operator_lock():
            child = self._by_name[name]
            await self._stop_child(child)
            child._terminated = False
            child.restarts += 1
            await self._start(child)
            return child_entry(child)

    async def terminate_child(self, name: str) -> None:
        """Stop child `name` gracefully and keep its spec (OTP's ``terminate_child``).

        It stays stopped, through later ONE_FOR_ALL / REST_FOR_ONE restarts
        too, until `restart_child` starts it. A TEMPORARY child is removed
        instead, as in OTP.

        Raises:
          KeyError: no such child.
          RuntimeError: the supervisor is not running.
        """
        async with self._operator_lock():
            child = self._by_name[name]
            child._terminated = True
            await self._stop_child(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)

    async def delete_child(self, name: str) -> None:
        """Stop child `name` (if it runs) and forget its spec (OTP's ``delete_child``).

        Unlike OTP, which refuses to delete a running child, this stops it
        first: the daemon's live reload wants one call.

        Raises:
          KeyError: no such child.
          RuntimeError: the supervisor is not running.
        """
        async with self._operator_lock():
            await self._delete(self._by_name[name])

    async def replace_child(self, spec: ChildSpec) -> dict[str, Any]:
        """Stop the child named ``spec.name`` and start ``spec`` in its place.

        Not in OTP, where a changed spec means ``delete_child`` and
        ``start_child``, which moves the child to the end of the start
        order. A live reload wants the child where the configuration puts
        it: the start order (and so the stop order, and what REST_FOR_ONE
        restarts) stays as it was. The new child starts with no restarts.
        Returns its snapshot entry.

        Raises:
          KeyError: no such child.
          ChildStartError: the new child failed before
            ``task_status.started()``; neither it nor the old one remains.
          RuntimeError: the supervisor is not running.
        """
        async with self._operator_lock():
            position = await self._delete(self._by_name[spec.name])
            return await self._add_and_start(spec, position)

    async def _delete(self, child: ChildHandle) -> int:
        """Stop `child` for good and forget it; where it stood in the start order."""
        position = self._children.index(child)  # before the stop: an exit may remove it
        child._terminated = True
        await self._stop_child(child)
        self._remove(child)
        return position

    async def _add_and_start(self, spec: ChildSpec, position: int | None = None) -> dict[str, Any]:
        """Add `spec` (at `position`, default last) and start it; forget it if it fails."""
        child = self._add(spec, position)
        try:
            await self._start(child)
        except ChildStartError:
            self._remove(child)
            raise
        return child_entry(child)

    def snapshot(self) -> dict[str, Any]:
        """The tree as plain, JSON-serialisable data (SPEC §3's shape).

        Keys: ``name``, ``kind`` (``"supervisor"``), ``state``, ``strategy``,
        ``restarts`` (0 for a root), ``started_at``, ``last_exit``
        (``None``), ``max_restarts``, ``max_seconds`` and ``children``: one
        entry per child with ``name``, ``kind``, ``state``, ``restarts``,
        ``restart``, ``started_at``, ``last_exit`` and, when the child passed
        a JSON-serialisable value other than ``None`` to
        ``task_status.started()``, ``started_value``. A nested supervisor's
        entry is its parent's view of it plus its own ``strategy`` and
        ``children``.
        """
        return supervisor_entry(self)

    # ---------------------------------------------------------------- lifecycle

    def _reset_for_run(self) -> None:
        self._runs += 1
        self._state = "starting"
        self._started_at = time.time()
        self._lock = anyio.Lock()
        self._events.clear()
        self._wake = None
        self._restart_times.clear()
        self._stopping_all = False
        self._finished = anyio.Event()
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self._scope_class = new_scope_factory()
        fresh = []
        for old in self._children:
            child = ChildHandle(old.spec, self)
            fresh.append(child)
        self._children = fresh
        self._by_name = {c.spec.name: c for c in fresh}

    async def _start_initial(self) -> None:
        for child in list(self._children):
            try:
                await self._start(child)
            except ChildStartError as exc:
                logger.error("supervisor %r: %s; stopping the others", self.name, exc)
                self._state = "failed"
                await self._stop_all()
                raise

    async def _watch_parent(self, parent: ChildHandle) -> None:
        # Our parent asked us (as its child) to stop: stop our subtree
        # gracefully; the parent's grace for us, if any, bounds it.
        await parent.stopping.wait()
        self._post((_STOP,))

    def _post(self, event: tuple[Any, ...]) -> None:
        self._events.append(event)
        if self._wake is not None:
            self._wake.set()
        if event[0] == _STOP and self._interrupt is not None:
            self._interrupt.set()  # a group restart's backoff never delays a stop

    async def _manage(self) -> RestartIntensityExceeded | None:
        """The manager loop: group restarts, giving up, stopping."""
        assert self._lock is not None
        while True:
            if not self._events:
                self._wake = anyio.Event()
                await self._wake.wait()
                self._wake = None
                continue
            event = self._events.popleft()
            async with self._lock:
                kind = event[0]
                if kind == _STOP:
                    self._state = "stopping"
                    await self._stop_all()
                    logger.info("supervisor %r: stopped", self.name)
                    return None
                if kind == _FAIL:
                    failure: RestartIntensityExceeded = event[1]
                    logger.error("supervisor %r: %s; stopping all children", self.name, failure)
                    self._state = "failed"
                    await self._stop_all()
                    return failure
                _, child, gen, delay = event
                current = self._by_name.get(child.spec.name) is child
                if child._gen == gen and current and not self._stopping_all:
                    await self._group_restart(child, delay)

    async def _stop_all(self) -> None:
        # OTP terminates children in reverse start order, one at a time.
        self._stopping_all = True
        for child in reversed(list(self._children)):
            await self._stop_child(child)

    # ----------------------------------------------------------------- children

    def _add(self, spec: ChildSpec, position: int | None = None) -> ChildHandle:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"expected a ChildSpec, not {spec!r}")
        if spec.name in self._by_name:
            raise ValueError(f"duplicate child name {spec.name!r} in supervisor {self.name!r}")
        child = ChildHandle(spec, self)
        if position is None:
            self._children.append(child)
        else:
            self._children.insert(position, child)
        self._by_name[spec.name] = child
        if self._changed is not None:
            self._touch()
        return child

    def _remove(self, child: ChildHandle) -> None:
        if self._by_name.get(child.spec.name) is child:
            del self._by_name[child.spec.name]
            self._children.remove(child)
            if self._changed is not None:
                self._touch()

    @contextlib.asynccontextmanager
    async def _operator_lock(self) -> AsyncIterator[None]:
        """Serialise an operator call with the manager; refuse unless running."""
        if self._lock is None or self._state != "running":
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        async with self._lock:
            if self._state != "running" or self._stopping_all:
                raise RuntimeError(f"supervisor {self.name!r} is not running")
            yield

    def _spawn(self, child: ChildHandle, waiter: _Waiter | None) -> None:
        assert self._tg is not None
        child._gen += 1
        child._alive = True
        child._deliberate = False
        child._waiter = waiter
        child.state = "starting"
        self._tg.start_soon(self._child_task, child, child._gen, name=child.spec.name)

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
        backing_off = child.state == "backoff"
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
        child.state = "stopped"

    async def _child_task(self, child: ChildHandle, gen: int) -> None:
        """A child's task: run the target; ONE_FOR_ONE restarts loop right here."""
        _current.set(child)
        scope = child._scope = self._scope_class()
        try:
            with scope:
                delay = 0.0
                while True:
                    if delay > 0:
                        child.state = "backoff"
                        await anyio.sleep(delay)
                    again = await self._run_once(child)
                    if again is None:
                        break
                    delay = again
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

    def _after_exit(
        self, child: ChildHandle, error: BaseException | None, shutdown: bool = False
    ) -> float | None:
        """Decide what an unrequested exit means (OTP's ``restart_child/2`` + ``restart/2``).

        `shutdown`: the child is a nested supervisor that gave up. OTP's
        supervisor then exits with reason ``shutdown``: a PERMANENT entry
        restarts it (counted here, so giving up escalates), a TRANSIENT or
        TEMPORARY one keeps the entry, ``failed``, until ``restart_child``.
        """
        restart = child.spec.restart
        if self._stopping_all:
            child.state = "stopped"
            return None
        if shutdown and restart is not Restart.PERMANENT:
            child.state = "failed"
            return None
        if restart is Restart.TEMPORARY:
            # OTP deletes a temporary child's spec when it exits, whatever the reason.
            child.state = "stopped"
            self._remove(child)
            return None
        if restart is Restart.TRANSIENT and error is None:
            child.state = "stopped"
            return None
        if not self._add_restart():
            self._post((_FAIL, self._give_up(child, error)))
            return None
        delay = self._next_delay(child)
        child.state = "backoff" if delay > 0 else "starting"
        if self.strategy is Strategy.ONE_FOR_ONE:
            child.restarts += 1
            return delay
        self._post((_GROUP, child, child._gen, delay))  # the manager restarts it
        return None

    def _add_restart(self) -> bool:
        """Count one restart now; False when that exceeds the intensity.

        OTP's ``add_restart/1``: keep the restarts no older than the period
        (``Now - T =< Period``) and fail when more than ``MaxR`` remain.
        """
        now = anyio.current_time()
        times = self._restart_times
        times.append(now)
        horizon = now - self.max_seconds
        while times[0] < horizon:
            times.popleft()
        return len(times) <= self.max_restarts

    def _give_up(self, child: ChildHandle, error: BaseException | None) -> RestartIntensityExceeded:
        """The restart intensity is exceeded at `child`: the failure to end the run with.

        From here on no exit is restarted (OTP's supervisor stops processing
        restarts once it decides to shut down).
        """
        self._stopping_all = True
        child.state = "failed"
        exc = RestartIntensityExceeded(
            self.name, child.spec.name, self.max_restarts, self.max_seconds, error
        )
        exc.__cause__ = error
        return exc

    def _next_delay(self, child: ChildHandle) -> float:
        if child._up_since is not None and (
            anyio.current_time() - child._up_since >= self.max_seconds
        ):
            child._backoff_n = 0  # it was healthy for a whole period: start over
        child._backoff_n += 1
        child._up_since = None
        return self.backoff.delay(child._backoff_n, self._rng)

    async def _group_restart(self, failed: ChildHandle, delay: float) -> None:
        """ONE_FOR_ALL / REST_FOR_ONE: stop the group in reverse, start it in order.

        A child that fails to become ready while the group starts again is one
        more crash (OTP's ``try_again_restart``): counted, and the group
        restart begins again from it.
        """
        while True:
            if self.strategy is Strategy.ONE_FOR_ALL:
                group = list(self._children)
            else:
                group = self._children[self._children.index(failed) :]
            for child in group:
                child._deliberate = child._alive  # a crash while we stop them is not news
            for child in reversed(group):
                await self._stop_child(child)
                if child is not failed and child.spec.restart is Restart.TEMPORARY:
                    # OTP never restarts a temporary child: it is deleted.
                    self._remove(child)
            if delay > 0:
                for child in group:
                    if self._by_name.get(child.spec.name) is child and not child._terminated:
                        child.state = "backoff"
                if not await self._group_backoff(delay):
                    return  # stop() came during the backoff: start nobody just to stop them
            retry: tuple[ChildHandle, BaseException | None] | None = None
            for child in group:
                if (
                    self._by_name.get(child.spec.name) is not child
                    or child._terminated
                    or child._alive  # an operator's restart_child started it meanwhile
                ):
                    continue
                child.restarts += 1
                try:
                    await self._start(child)
                except ChildStartError as exc:
                    retry = (child, exc.error)
                    break
            if retry is None:
                return
            failed, error = retry
            if not self._add_restart():
                self._events.appendleft((_FAIL, self._give_up(failed, error)))
                return
            delay = self._next_delay(failed)

    async def _group_backoff(self, delay: float) -> bool:
        """Wait a group restart's backoff; False if `stop()` came meanwhile.

        The manager holds the lock for a group restart, but not while it
        waits here: an operator's `terminate_child`, `restart_child` or
        `delete_child` acts at once on a child in backoff (the group restart
        then skips it), and `stop()` ends the wait, so that nobody waits out
        a backoff (SPEC §3).
        """
        assert self._lock is not None
        if any(event[0] == _STOP for event in self._events):
            return False
        interrupt = self._interrupt = anyio.Event()
        self._lock.release()
        try:
            with anyio.move_on_after(delay):
                await interrupt.wait()
        finally:
            self._interrupt = None
            with anyio.CancelScope(shield=True):
                await self._lock.acquire()
        return not interrupt.is_set()
