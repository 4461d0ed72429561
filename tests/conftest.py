"""Session-wide setup for the whole suite."""

from __future__ import annotations

import compileall
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background by a non-interactive shell (`.ci/run &`)
# inherits SIGINT ignored, and so would every process it spawns: the tests
# that press Ctrl-C on a command would see nothing happen. A handler of our
# own is reset to the default in every child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Test trees whose fixtures need POSIX, and why. Their tests are marked
#: ``posix`` (bicameral.testing's platform markers): on Windows they are
#: skipped, saying so, until their fixtures learn the TCP transport and
#: Windows' paths. docs/platforms.md says what runs where.
POSIX_TREES = {
    "daemon": "the fixtures use Unix sockets, /tmp, mode bits and SIGKILL",
    "dashboard": "the fixtures use /tmp state dirs and the MCP tests' daemons",
    "doctor": "the checks under test are mode bits and Unix socket paths",
    "hardening": "raw Unix sockets, signals, mode bits, a second user",
    "mcp": "the fixtures use /tmp state dirs, Unix sockets and SIGKILL",
    "test_cli_root.py": "a /tmp state dir and signals",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of a `POSIX_TREES` tree ``posix``, with the tree's reason."""
    tests = ROOT / "tests"
    for item in items:
        try:
            first = item.path.relative_to(tests).parts[0]
        except ValueError:
            continue
        reason = POSIX_TREES.get(first)
        if reason is not None:
            item.add_marker(pytest.mark.posix(reason))


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
