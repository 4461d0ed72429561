"""The pytest plugin (entry point ``pytest11: bicameral``): bicameral's fixtures.

Importing it imports pytest and nothing heavy: Trio, the supervisor and the
MCP SDK are loaded by the fixtures when a test uses them.

- ``bicameral_daemon``: a :class:`~bicameral.testing.BicameralDaemon`.
- ``bicameral_supervisor``: a :class:`~bicameral.testing.SupervisorFactory`,
  under pytest-trio; without pytest-trio the fixture skips the test, saying so.
- The ``bicameral_config`` marker: ``@pytest.mark.bicameral_config(servers)``
  or ``@pytest.mark.bicameral_config(text="...")`` configures the test's
  ``bicameral_daemon`` before it starts (the closest marker wins, so a class
  or module ``pytestmark`` sets a default that a test can override).
- When a test using ``bicameral_daemon`` fails (in setup, call or
  teardown), the daemon's log is added to its report as a section.
- Platform markers: ``@pytest.mark.posix("why")``, ``linux_only("why")``,
  ``macos_only("why")``, ``windows_only("why")``. A marked test runs only
  there; elsewhere it is *skipped*, with the platform and the reason in the
  skip message (``-ra`` lists them), never silently passed. The reason is
  required.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from bicameral.testing._daemon import BicameralDaemon

__all__ = [
    "bicameral_daemon",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
]

#: marker -> (which Platform attribute allows it, what the skip message calls it)
PLATFORM_MARKERS = {
    "posix": ("posix", "POSIX only (Linux, macOS)"),
    "linux_only": ("linux", "Linux only"),
    "macos_only": ("macos", "macOS only"),
    "windows_only": ("windows", "Windows only"),
}

_DAEMONS = pytest.StashKey[list["BicameralDaemon"]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bicameral_config(servers=None, *, text=None): the config.toml of the test's "
        "bicameral_daemon (servers: name -> [mcp.servers.NAME] table)",
    )
    for name, (_, label) in PLATFORM_MARKERS.items():
        config.addinivalue_line(
            "markers", f"{name}(reason): {label}; skipped elsewhere, saying the reason"
        )
    # The supervisor fixture is async only where pytest-trio can run it; a
    # plain async fixture without it would be an obscure error in pytest.
    if config.pluginmanager.hasplugin("trio"):
        from bicameral.testing import _fixtures_trio as fixtures
    else:
        from bicameral.testing import _fixtures_no_trio as fixtures  # type: ignore[no-redef]
    config.pluginmanager.register(fixtures, "bicameral.testing.supervisor")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked for another platform, saying which and why."""
    from bicameral.platform import CURRENT

    for name, (allows, label) in PLATFORM_MARKERS.items():
        for marker in item.iter_markers(name):
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
            if not isinstance(reason, str) or not reason:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name} needs a reason")
            if not getattr(CURRENT, allows):
                pytest.skip(f"{label}, this is {CURRENT.label}: {reason}")


@pytest.fixture
def bicameral_daemon(request: pytest.FixtureRequest) -> Iterator[BicameralDaemon]:
    """A real bicameral daemon in a temporary state dir, started on first use.

    Configure it with ``bicameral_daemon.configure({...})`` or the
    ``bicameral_config`` marker before using it. Stopped at teardown, with
    nothing left behind (a leftover fails the test's teardown).
    """
    from bicameral.testing._daemon import BicameralDaemon

    daemon = BicameralDaemon()
    request.node.stash.setdefault(_DAEMONS, []).append(daemon)
    try:
        marker = request.node.get_closest_marker("bicameral_config")
        if marker is not None:
            daemon.configure(*marker.args, **marker.kwargs)
        yield daemon
    finally:
        daemon.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for daemon in item.stash.get(_DAEMONS, []):
            log = daemon.log_text()
            report.sections.append((f"bicameral daemon log ({daemon.log_path})", log or "(empty)"))
    return report
