"""Session-wide setup for the whole suite."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Bring the bytecode of bicameral and the test servers up to date, once.

    The tests start hundreds of Python processes (daemons, bridges, CLIs,
    MCP servers). A fresh checkout has no bytecode, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (some CI images and sandboxes set it)
    none is ever written, so every one of those processes would compile the
    sources again: minutes of the suite's time spent in the compiler. An
    installed package has its bytecode; so does this checkout, from here on.
    """
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller did it
        return
    for directory in ("bicameral", "tests"):
        compileall.compile_dir(str(ROOT / directory), quiet=1)
