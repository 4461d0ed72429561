"""``bicameral_supervisor`` where pytest-trio is installed (registered by the plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from bicameral.testing._supervisor import SupervisorFactory

__all__ = ["bicameral_supervisor"]


async def _bicameral_supervisor() -> AsyncIterator[SupervisorFactory]:
    """Start supervisors in the test's Trio run: ``await bicameral_supervisor(children)``.

    Stopped gracefully at teardown; one that gives up fails the test unless
    it was started with ``may_exit=True``.
    """
    import anyio

    from bicameral.testing._supervisor import SupervisorFactory

    async with anyio.create_task_group() as tg:
        factory = SupervisorFactory(tg)
        yield factory
        await factory.aclose()
        tg.cancel_scope.cancel()


# A Trio fixture even without trio_mode (pytest-trio's `trio_fixture` does the
# same, but importing it would import Trio): a sync test that asks for it gets
# pytest-trio's "Trio fixtures can only be used by Trio tests".
_bicameral_supervisor._force_trio_fixture = True  # type: ignore[attr-defined]
bicameral_supervisor = pytest.fixture(name="bicameral_supervisor")(_bicameral_supervisor)
