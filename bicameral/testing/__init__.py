"""Test fixtures for projects that embed bicameral: a pytest plugin.

Installed with bicameral and registered through the ``pytest11`` entry
point, so the fixtures are there in any test suite without a ``conftest.py``:

- ``until_state``, ``until_restarts``, ``until``: wait for a child of a
  running tree to reach a state or a restart count, on events.
- ``bicameral_supervisor`` (pytest-trio, or anyio's plugin): ``await
  bicameral_supervisor(children, **supervisor_kwargs)`` runs a
  :class:`~bicameral.supervisor.Supervisor` in the test's Trio run and returns
  it started; it is stopped gracefully at teardown, and a supervisor that gives
  up (or crashes) fails the test.
- ``bicameral_daemon``: a real daemon in a short temporary state directory,
  started on first use, optionally with a ``config.toml`` the test provides
  (:meth:`BicameralDaemon.configure` or the ``bicameral_config`` marker),
  stopped at teardown with nothing left behind; its log is attached to the
  report of a failing test.

See ``docs/testing.md``. Importing this package (or the plugin) imports
neither Trio nor the MCP SDK: they are loaded when a fixture is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bicameral._lazy import lazy_exports

if TYPE_CHECKING:
    from bicameral.testing._daemon import BicameralDaemon, LeftBehind
    from bicameral.testing._supervisor import SupervisorCrashed, SupervisorFactory
    from bicameral.testing._wait import until, until_restarts, until_state

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
