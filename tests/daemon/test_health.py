"""How the daemon judges its tree for `system.health` and systemd's watchdog."""

from __future__ import annotations

from typing import Any

from bicameral.daemon._health import all_running as _all_running
from bicameral.daemon._health import core_healthy as _core_healthy
from bicameral.daemon._health import status_line as _status_line


def tree(*adapters: dict[str, Any], server: str = "running") -> dict[str, Any]:
    return {
        "name": "bicameral",
        "state": "running",
        "children": [
            {"name": "signals", "state": "running"},
            {"name": "server", "state": server},
            {"name": "adapters", "state": "running", "children": list(adapters)},
        ],
    }


def test_a_child_reporting_degraded_health_makes_the_tree_degraded() -> None:
    ok = {"name": "a", "state": "running", "started_value": {"health": "ready"}}
    degraded = {"name": "b", "state": "running", "started_value": {"health": "degraded"}}
    assert _all_running(tree(ok))
    assert not _all_running(tree(ok, degraded))
    assert not _all_running(tree({"name": "c", "state": "backoff"}))


def test_the_watchdog_ignores_adapters_but_not_the_server() -> None:
    failed = {"name": "a", "state": "failed"}
    assert _core_healthy(tree(failed))
    assert not _core_healthy(tree(server="backoff"))
    assert _status_line(tree(failed, {"name": "b", "state": "running"})) == (
        "ready; adapters: 1 failed, 1 running"
    )
    assert _status_line(tree()) == "ready; no adapters configured"
