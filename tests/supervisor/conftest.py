"""Helpers for the supervisor tests: controllable children and a running tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psutil
import pytest
import trio
import trio.testing

from bicameral.supervisor import Supervisor, current_child


class Ctl:
    """A child target the test drives: each run reports ready, then waits for orders.

    `crash(exc)` / `exit()` end the current run; `log` (shared between the
    children of one test) records ``start X`` and ``stop X`` in order;
    `starts` holds the (mock) time of every start. With `honour_stop`, a run
    returns as soon as ``current_child().stopping`` is set; otherwise it has to
    be cancelled.
    """

    def __init__(self, name: str, log: list[str] | None = None, *, honour_stop: bool = True):
        self.name = name
        self.log = log if log is not None else []
        self.honour_stop = honour_stop
        self.runs = 0
        self.starts: list[float] = []
        self.ready_delay = 0.0
        self.fail_before_ready: BaseException | None = None
        self.return_before_ready = False
        self.exits: list[str] = []
        self._order: tuple[str, BaseException | None] | None = None
        self._wake = trio.Event()
        self._next_run = trio.Event()

    async def __call__(self, *, task_status: Any) -> None:
        self.runs += 1
        self.starts.append(trio.current_time())
        self.log.append(f"start {self.name}")
        self._order = None
        self._wake = wake = trio.Event()
        next_run, self._next_run = self._next_run, trio.Event()
        next_run.set()
        if self.ready_delay:
            await trio.sleep(self.ready_delay)
        if self.fail_before_ready is not None:
            self.log.append(f"fail {self.name}")
            raise self.fail_before_ready
        if self.return_before_ready:
            return
        task_status.started(self.runs)
        self.log.append(f"ready {self.name}")
        try:
            async with trio.open_nursery() as nursery:
                if self.honour_stop:
                    nursery.start_soon(self._on_stop, wake)
                await wake.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.log.append(f"stop {self.name}")
        assert self._order is not None
        kind, exc = self._order
        self.exits.append(kind)
        if exc is not None:
            raise exc

    async def _on_stop(self, wake: trio.Event) -> None:
        await current_child().stopping.wait()
        self._order = ("stopped", None)
        wake.set()

    def crash(self, exc: BaseException | None = None) -> None:
        self._order = ("crash", exc if exc is not None else RuntimeError(f"{self.name} crashed"))
        self._wake.set()

    def exit(self) -> None:
        self._order = ("exit", None)
        self._wake.set()

    async def next_run(self) -> None:
        """Wait until the target is run again."""
        await self._next_run.wait()


def alive(pid: int) -> bool:
    """True for a live process; a zombie counts as gone (it holds no resources)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def settle() -> None:
    """Let every task run until all are blocked (instant restarts have happened)."""
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def running(sup: Supervisor) -> AsyncIterator[Supervisor]:
    """Run `sup` in a nursery for the block; cancel whatever is left after it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield sup
        nursery.cancel_scope.cancel()


class Outcome:
    """Runs a supervisor in the background and keeps how `run` ended."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.error: BaseException | None = None
        self.done = trio.Event()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.sup.run(task_status=task_status)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


def count_tasks() -> int:
    """How many tasks exist in this trio run, all of them."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


@pytest.fixture
def log() -> list[str]:
    return []
