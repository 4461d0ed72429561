"""The ``bicameral_supervisor`` fixture's machinery: supervisors in the test's task group.

Only imported once a test uses the fixture. Written on anyio, so the same
factory serves pytest-trio's tests and anyio's (asyncio or Trio) ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
import anyio.abc

from bicameral.supervisor import ChildSpec, Supervisor

__all__ = ["SupervisorCrashed", "SupervisorFactory"]


class SupervisorCrashed(AssertionError):
    """A supervisor under test ended by itself: it gave up or crashed.

    An ``AssertionError`` so pytest reports it as the test's failure; the
    supervisor's own exception (``RestartIntensityExceeded``...) is its
    ``__cause__``. A test that expects the end starts the supervisor with
    ``may_exit=True`` and awaits `SupervisorFactory.wait_exit` instead.
    """


class _Run:
    """One supervisor run in the fixture: how it ended, once it has."""

    def __init__(self, may_exit: bool) -> None:
        self.may_exit = may_exit
        self.done = anyio.Event()
        self.error: BaseException | None = None


class SupervisorFactory:
    """What ``bicameral_supervisor`` gives a test: call it to start a supervisor.

    ``await factory(children, **kwargs)`` builds ``Supervisor(name, children,
    **kwargs)`` (``name`` defaults to ``"test"``), starts it in the fixture's
    task group and returns it once every initial child has started, exactly
    as ``await nursery.start(sup.run)`` would. ``await factory(sup)`` starts a
    supervisor built by the test. A child that fails before it is ready makes
    the call raise (``ChildStartError``), so a test can also check that.

    Every supervisor started this way is stopped gracefully (``stop()``,
    reverse start order) at teardown. One that ends on its own before that
    (its restart intensity exceeded, or any other exception out of ``run``)
    fails the test with :class:`SupervisorCrashed`, unless it was started
    with ``may_exit=True``: then its end is kept for `wait_exit`, which
    re-raises it, so that ``with pytest.raises(RestartIntensityExceeded):
    await factory.wait_exit(sup)`` expects a supervisor to give up.
    """

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._tg = task_group
        self.supervisors: list[Supervisor] = []
        self._runs: dict[int, _Run] = {}

    async def __call__(
        self,
        children: Iterable[ChildSpec] | Supervisor = (),
        /,
        *,
        name: str = "test",
        may_exit: bool = False,
        **supervisor_kwargs: Any,
    ) -> Supervisor:
        if isinstance(children, Supervisor):
            if supervisor_kwargs or name != "test":
                raise TypeError("pass either a Supervisor or its children and options, not both")
            sup = children
        else:
            sup = Supervisor(name, list(children), **supervisor_kwargs)
        run = self._runs[id(sup)] = _Run(may_exit)
        await self._tg.start(self._run, sup, run)
        self.supervisors.append(sup)
        return sup

    async def wait_exit(self, sup: Supervisor) -> None:
        """Wait until `sup` (started with ``may_exit=True``) ends; re-raise how it ended.

        Returns normally when it was stopped; raises its exception
        (``RestartIntensityExceeded``...) when it gave up or crashed.
        """
        run = self._runs.get(id(sup))
        if run is None or not run.may_exit:
            raise ValueError("wait_exit needs a supervisor started here with may_exit=True")
        await run.done.wait()
        if run.error is not None:
            raise run.error

    async def _run(
        self, sup: Supervisor, run: _Run, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        started = False

        class _Status:
            def started(self, value: Any = None) -> None:
                nonlocal started
                started = True
                task_status.started()

        try:
            await sup.run(task_status=_Status())
        except Exception as exc:
            if not started:
                raise  # a start failure: the test's `await factory(...)` raises it
            if not run.may_exit:
                raise SupervisorCrashed(
                    f"supervisor {sup.name!r} stopped on its own: {exc}"
                ) from exc
            run.error = exc
        finally:
            run.done.set()

    async def aclose(self) -> None:
        """Stop every supervisor still running, the last started first."""
        for sup in reversed(self.supervisors):
            await sup.stop()
