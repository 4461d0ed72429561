"""The daemon's health, read from its supervisor tree's snapshot.

``system.health`` (``daemon status``) says ``ok`` only when every node runs
and none reports itself degraded (`all_running`); systemd's watchdog is
pinged while the daemon's own machinery runs (`core_healthy`), with a
``STATUS=`` line of the adapters by state (`status_line`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["all_running", "core_healthy", "status_line"]


def core_healthy(tree: dict[str, Any]) -> bool:
    """The root runs and so does every child of it but the ``adapters`` subtree."""
    if tree.get("state") != "running":
        return False
    return all(
        child.get("state") == "running"
        for child in tree.get("children") or ()
        if child.get("name") != "adapters"
    )


def status_line(tree: dict[str, Any]) -> str:
    """A one-line summary for systemd's ``STATUS=``: adapters by state."""
    adapters = next((c for c in tree.get("children") or () if c.get("name") == "adapters"), None)
    children = (adapters or {}).get("children") or []
    if not children:
        return "ready; no adapters configured"
    states: dict[str, int] = {}
    for child in children:
        states[child.get("state", "?")] = states.get(child.get("state", "?"), 0) + 1
    parts = [f"{n} {state}" for state, n in sorted(states.items())]
    return f"ready; adapters: {', '.join(parts)}"


def all_running(entry: dict[str, Any]) -> bool:
    """Every node runs, and none reports itself degraded.

    A child reports its own health through its started value (an MCP
    server's subtree: ``degraded`` when it came back with no tools,
    ``restarting`` between two instances, ``failed`` once given up on,
    ``needs-login`` for a remote server whose OAuth login is missing or
    expired, and ``starting`` again after a crash): running, but not to be
    called healthy. A first start (warming up) and ``stopped`` (an operator's ``mcp
    stop``) are not degradation.
    """
    if entry.get("state") != "running":
        return False
    value = entry.get("started_value")
    if isinstance(value, dict):
        health = value.get("health")
        if health in ("degraded", "restarting", "failed", "needs-login"):
            return False
        if health == "starting" and value.get("restarts"):
            return False  # flapping: back to starting after a crash
    return all(all_running(child) for child in entry.get("children") or ())
