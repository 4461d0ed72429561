"""`Supervisor`: starts children in order, restarts them, gives up, stops them.

The public surface and the run: `run`, the manager loop, the operator calls
(`start_child`, `restart_child`...), `snapshot`. The layers below hold the
mechanisms: `ChildTasks` (``_child_tasks.py``) runs each child in a task,
`Restarts` (``_restarts.py``) decides what an exit means by OTP's rules. How
they fit:

* Everything that touches several children (a ONE_FOR_ALL / REST_FOR_ONE
  restart, giving up, a graceful stop) runs in `run`'s own task, the
  *manager*, one event at a time, as OTP's supervisor process handles one
  message at a time. Operator calls (`start_child`...) take the same lock.
* Cancellation from outside reaches every child through the task group; a
  child's task re-raises it and never restarts, so the whole tree unwinds at
  once.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from bicameral.supervisor._backoff import Backoff
from bicameral.supervisor._child import ChildHandle, _current
from bicameral.supervisor._child_tasks import logger
from bicameral.supervisor._errors import ChildStartError, RestartIntensityExceeded
from bicameral.supervisor._intensity import RestartIntensity
from bicameral.supervisor._restarts import FAIL, STOP, Restarts
from bicameral.supervisor._snapshot import child_entry, supervisor_entry
from bicameral.supervisor._spec import ChildSpec, Restart, Strategy
from bicameral.supervisor._tasks import new_scope_factory, open_task_group

__all__ = ["Supervisor"]


class Supervisor(Restarts):
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
        super().__init__(
            name,
            children,
            strategy=strategy,
            intensity=RestartIntensity(max_restarts, max_seconds),
            backoff=backoff if backoff is not None else Backoff(),
            rng=rng if rng is not None else random.Random(),
        )
        self._st = "stopped"
        self._started_at: float | None = None
        self._runs = 0
        self._finished: anyio.Event | None = None

    @property
    def _state(self) -> str:
        return self._st

    @_state.setter
    def _state(self, value: str) -> None:
        self._st = value
        changes = self._changes
        if changes.event is not None or changes.parent is not None:
            changes.touch()

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
        await self._changes.wait_until(predicate)

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
        if parent is not None and parent.spec.target is self:
            self._changes.parent = parent._changes
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
            self._changes.parent = None
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
        self._post((STOP,))
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
            try:
                await self._start(child)
            except ChildStartError:
                self._retry_later(child)  # with ChildSpec.retry_after
                raise
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
        return supervisor_entry(self, max(0, self._runs - 1), self._started_at)

    # ---------------------------------------------------------------- lifecycle

    def _reset_for_run(self) -> None:
        self._runs += 1
        self._state = "starting"
        self._started_at = time.time()
        self._lock = anyio.Lock()
        self._events.clear()
        self._wake = None
        self._intensity.clear()
        self._stopping_all = False
        self._finished = anyio.Event()
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self._scope_class = new_scope_factory()
        fresh = []
        for old in self._children:
            child = ChildHandle(old.spec, self._changes)
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
        self._post((STOP,))

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
                if kind == STOP:
                    self._state = "stopping"
                    await self._stop_all()
                    logger.info("supervisor %r: stopped", self.name)
                    return None
                if kind == FAIL:
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

    @contextlib.asynccontextmanager
    async def _operator_lock(self) -> AsyncIterator[None]:
        """Serialise an operator call with the manager; refuse unless running."""
        if self._lock is None or self._state != "running":
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        async with self._lock:
            if self._state != "running" or self._stopping_all:
                raise RuntimeError(f"supervisor {self.name!r} is not running")
            yield
