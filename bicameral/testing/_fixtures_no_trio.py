"""``bicameral_supervisor`` without pytest-trio: anyio's pytest plugin runs it.

Tests marked ``@pytest.mark.anyio`` (with anyio's ``anyio_backend`` fixture:
``"asyncio"`` by default, ``"trio"`` if parametrised so) get the same factory
as under pytest-trio. Any other test that asks for it is skipped, saying
what it needs (an async fixture it could not run would be an obscure error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["bicameral_supervisor", "bicameral_supervisor_anyio"]


@pytest.fixture
def bicameral_supervisor(request: pytest.FixtureRequest) -> Any:
    """Start supervisors in the test's event loop: ``await bicameral_supervisor(children)``."""
    if "anyio_backend" not in request.fixturenames:
        pytest.skip(
            "bicameral_supervisor needs an async test run by pytest-trio "
            "(pip install pytest-trio) or by anyio's plugin (@pytest.mark.anyio)"
        )
    return request.getfixturevalue("bicameral_supervisor_anyio")


@pytest.fixture
async def bicameral_supervisor_anyio() -> AsyncIterator[Any]:
    """The factory itself, in a task group of anyio's runner."""
    import anyio

    from bicameral.testing._supervisor import SupervisorFactory

    async with anyio.create_task_group() as tg:
        factory = SupervisorFactory(tg)
        yield factory
        await factory.aclose()
        tg.cancel_scope.cancel()
