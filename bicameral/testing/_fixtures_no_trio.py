"""``bicameral_supervisor`` where pytest-trio is missing: it skips, saying why."""

from __future__ import annotations

import pytest

__all__ = ["bicameral_supervisor"]


@pytest.fixture
def bicameral_supervisor() -> None:
    """Needs pytest-trio, which is not installed (or disabled with ``-p no:trio``)."""
    pytest.skip(
        "bicameral_supervisor needs pytest-trio (pip install pytest-trio; "
        "it runs the supervisor inside the test's Trio run)"
    )
