"""The ``bicameral_supervisor`` fixture's machinery: supervisors in the test's nursery.

Only imported once a test uses the fixture, so Trio is not loaded before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from bicameral.supervisor import ChildSpec, Supervisor

__all__ = ["SupervisorCrashed", "SupervisorFactory"]


class SupervisorCrashed(AssertionError):
    """A supervisor under test ended by itself: it gave up or crashed.

    An ``AssertionError`` so pytest reports it as the test's failure; the
    supervisor's own exception (``RestartIntensityExceeded``...) is its
    ``__cause__``.
    """


class SupervisorFactory:
    """What ``bicameral_supervisor`` gives a test: call it to start a supervisor.

    ``await factory(children, **kwargs)`` builds ``Supervisor(name, children,
    **kwargs)`` (``name`` defaults to ``"test"``), starts it in the fixture's
    nursery and returns it once every initial child has started, exactly as
    ``await nursery.start(sup.run)`` would. ``await factory(sup)`` starts a
    supervisor built by the test. A child that fails before it is ready makes
    the call raise (``ChildStartError``), so a test can also check that.

    Every supervisor started this way is stopped gracefully (``stop()``,
    reverse start order) at teardown. One that ends on its own before that
    (its restart intensity exceeded, or any other exception out of ``run``)
    fails the test with :class:`SupervisorCrashed`; pytest-trio cancels the
    test at once when that happens.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.supervisors: list[Supervisor] = []

    async def __call__(
        self,
        children: Iterable[ChildSpec] | Supervisor = (),
        /,
        *,
        name: str = "test",
        **supervisor_kwargs: Any,
    ) -> Supervisor:
        if isinstance(children, Supervisor):
            if supervisor_kwargs or name != "test":
                raise TypeError("pass either a Supervisor or its children and options, not both")
            sup = children
        else:
            sup = Supervisor(name, list(children), **supervisor_kwargs)
        await self._nursery.start(self._run, sup)
        self.supervisors.append(sup)
        return sup

    async def _run(self, sup: Supervisor, *, task_status: trio.TaskStatus[None]) -> None:
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
            raise SupervisorCrashed(f"supervisor {sup.name!r} stopped on its own: {exc!r}") from exc

    async def aclose(self) -> None:
        """Stop every supervisor still running, the last started first."""
        for sup in reversed(self.supervisors):
            await sup.stop()
