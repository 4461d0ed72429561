"""What ``bicameral mcp ps`` and ``mcp restart | start | stop`` do: the operator's view.

`server_rows` joins the configuration (every server, enabled or not) with
the running daemon's live view: each server's subtree in the ``adapters``
supervisor (``adapters.list``) and its live status (``mcp.servers``: pid,
tools, attached clients, last error), plus the memory of its process tree.
`control_server` acts on one server of the running daemon at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError, DaemonError, call_daemon

if TYPE_CHECKING:
    from collections.abc import Callable

    from bicameral.daemon import DaemonPaths

__all__ = [
    "ACTIONS",
    "control_server",
    "join_rows",
    "process_table",
    "ps_footer",
    "server_rows",
    "view_tools",
]

#: ``mcp ACTION NAME`` -> the daemon's method.
ACTIONS = {"restart": "adapters.restart", "start": "adapters.start", "stop": "adapters.stop"}

# A server's own states (`Upstream.state`) as `mcp ps` shows them (SPEC §5).
_SHOWN = {
    "ready": "ready",
    "degraded": "degraded",
    "starting": "starting",
    "restarting": "backoff",
    "failed": "failed",
    "stopped": "stopped",
    "needs-login": "needs-login",
}


#: Every process's RSS and its children, read in one pass (`process_table`).
_Table = tuple[dict[int, int], dict[int, list[int]]]


def process_table() -> _Table | None:
    """RSS by pid and children by parent pid, for the whole process table at once.

    One pass instead of one ``children(recursive=True)`` scan per server:
    with 30 servers that is the difference between ~30 ms and ~2 s.
    """
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    rss: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                parent, memory = proc.ppid(), proc.memory_info().rss
        except psutil.Error:  # gone, or not ours to read
            continue
        rss[proc.pid] = int(memory)
        children.setdefault(int(parent), []).append(proc.pid)
    return rss, children


def _memory(pid: int | None, table: _Table | None) -> int | None:
    """RSS in bytes of `pid` and its descendants (a wrapper's children count too)."""
    if pid is None or table is None or pid not in table[0]:
        return None
    rss, children = table
    total, stack, seen = 0, [pid], set()
    while stack:
        each = stack.pop()
        if each in seen:
            continue
        seen.add(each)
        total += rss.get(each, 0)
        stack.extend(children.get(each, ()))
    return total


class _Running:
    """A server known only from the running daemon (config.toml cannot be read now)."""

    enabled = True
    auth = "none"

    def __init__(self, name: str, status: dict[str, Any]) -> None:
        self.name = name
        self.share = str(status.get("share") or "auto")
        url = status.get("url")
        self.url = url if isinstance(url, str) else None
        self.remote = self.url is not None


def _configured(paths: DaemonPaths, warn: Callable[[str], None] | None) -> list[Any] | None:
    """The configured servers; None (after `warn`) when config.toml cannot be read now.

    A half-edited file must never block operating the running daemon (which
    runs what it last loaded): the caller then works from the daemon's view.
    """
    from bicameral.mcp._config_edit import list_servers

    try:
        return list(list_servers(paths.config, must_exist=paths.config_explicit))
    except ConfigError as exc:
        if warn is None:
            raise
        warn(f"{exc} (showing what the running daemon runs)")
        return None


def server_rows(
    paths: DaemonPaths, name: str | None = None, *, warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every configured server (or `name` only), joined with the live daemon.

    Returns ``{"daemon": "running" | "stopped", "config_path", "servers": [...]}``
    where each server has ``name``, ``state`` (``starting | ready | degraded
    | backoff | failed | down | stopped | disabled | needs-login``; ``down``: a
    remote server given up on for now and retried with backoff; ``degraded``:
    serving, but a remote answered HTTP 5xx or stalled, or it came back with
    no tools), ``enabled``, ``pid``, ``uptime_s``,
    ``restarts``, ``tools`` (listed by the server), ``offered_tools`` (after
    its rules), ``schema_bytes`` and ``schema_tokens`` (their size, the
    second an estimate), ``clients``, ``memory_bytes`` (all its
    instances), ``last_error``, ``share``, ``protocol_version`` (the era the
    server is spoken to in) and ``instances`` (each with
    ``name``, ``state``, ``pid``, ``clients``, ``capabilities``, ``roots``,
    ``spare``; the primary, ``server``, first), ``url`` and ``auth`` (a
    remote server's endpoint and ``none | bearer``; None for a local one),
    and ``retry_at``: for a ``failed`` server, when the daemon tries it
    again (a Unix time; None when nothing is due).
    ``store``: the shared store's ``url`` (no password), ``state`` (``ok |
    unreachable``) and ``problem``, when ``[daemon.store]`` names one.

    With `warn`, a configuration that cannot be read is passed to it (one
    line) and the rows come from the running daemon alone.

    Raises:
      ConfigError: the configuration cannot be read (and no `warn`, or no
        daemon runs), or `name` is not in it.
    """
    configured = _configured(paths, warn)
    entries: list[dict[str, Any]] = []
    live: list[dict[str, Any]] = []
    running = True
    store: dict[str, Any] | None = None
    try:
        entries = call_daemon(paths, "adapters.list") or []
        live = call_daemon(paths, "mcp.servers") or []
        store = (call_daemon(paths, "system.health") or {}).get("store")
    except DaemonError:
        running = False
    if configured is None and not running:
        configured = _configured(paths, None)  # raises: nothing else to show
    if configured is None:
        by_name = {str(item.get("name")): item for item in live}
        configured = [
            _Running(n, by_name.get(n) or (entry.get("started_value") or {}))
            for entry in entries
            for n in [str(entry.get("name"))]
        ]
    if name is not None and name not in {s.name for s in configured}:
        known = ", ".join(s.name for s in configured) or "none"
        raise ConfigError(f"no MCP server named {name!r} in {paths.config} (configured: {known})")
    rows = join_rows(paths, configured, entries, live, running=running, name=name)
    rows["store"] = store
    return rows


def ps_footer(result: dict[str, Any]) -> str:
    """What ``mcp ps`` prints under its table: no daemon running, the shared store's state."""
    lines = []
    if result["daemon"] != "running":
        lines.append("(no daemon is running: bicameral daemon start)")
    store = result.get("store")
    if store:
        why = f": {store['problem']}" if store.get("problem") else ""
        lines.append(f"shared store {store['url']}: {store['state']}{why}")
    return "".join(f"\n{line}" for line in lines)


def join_rows(
    paths: DaemonPaths,
    configured: list[Any],
    adapters: list[dict[str, Any]],
    servers: list[dict[str, Any]],
    *,
    running: bool = True,
    name: str | None = None,
    processes: _Table | None = None,
) -> dict[str, Any]:
    """`server_rows` from what it asked the daemon: ``adapters.list`` and ``mcp.servers``.

    The daemon's own dashboard passes the same two lists, taken in-process.
    Reads process memory (psutil; `processes` is a `process_table` taken
    earlier, to reuse): call it off the event loop.
    """
    entries = {str(entry.get("name")): entry for entry in adapters}
    live = {str(item.get("name")): item for item in servers}
    now = time.time()
    table = processes if processes is not None or not running else process_table()
    rows = []
    for server in configured:
        if name is not None and server.name != name:
            continue
        entry = entries.get(server.name)
        status = live.get(server.name) or (entry or {}).get("started_value") or {}
        if not server.enabled:
            state = "disabled"
        elif not running or entry is None:
            state = "stopped"
        elif entry.get("state") in ("failed", "stopped"):
            state = str(entry["state"])
            if state == "failed" and server.remote and entry.get("retry_at") is not None:
                state = "down"  # an outage: retried with backoff for as long as it lasts
        else:
            state = _SHOWN.get(str(status.get("state")), "starting")
        instance = ((entry or {}).get("children") or [{}])[0]
        started = instance.get("started_at")
        up = state in ("ready", "degraded", "starting") and isinstance(started, int | float)
        pid = status.get("pid") if state not in ("stopped", "disabled", "failed", "down") else None
        instances = _instances(status) if state not in ("stopped", "disabled") else []
        memory = _memory(pid if isinstance(pid, int) else None, table)
        for inst in instances[1:]:  # the keyed ones: their processes count too
            extra = _memory(inst["pid"], table)
            if extra is not None:
                memory = (memory or 0) + extra
        rows.append(
            {
                "name": server.name,
                "state": state,
                "enabled": server.enabled,
                "pid": pid,
                "uptime_s": round(now - started, 1) if up else None,
                "restarts": int(status.get("restarts") or 0),
                "tools": status.get("tools"),
                # What clients are offered of them (its rules applied) and what
                # their schemas cost: bytes of JSON, and tokens as an estimate
                # (bytes / 4; docs/tools.md).
                "offered_tools": status.get("offered_tools"),
                "schema_bytes": status.get("schema_bytes"),
                "schema_tokens": status.get("schema_tokens"),
                "clients": status.get("clients"),
                "memory_bytes": memory,
                "last_error": status.get("last_error") or None,
                "share": status.get("share") or server.share,
                "protocol_version": status.get("protocol_version"),
                "instances": instances,
                "url": server.url,
                "auth": _auth_state(paths, server, state) if server.remote else None,
                "retry_at": (entry or {}).get("retry_at") if state in ("failed", "down") else None,
            }
        )
    return {
        "daemon": "running" if running else "stopped",
        "config_path": str(paths.config),
        "servers": rows,
    }


def _auth_state(paths: DaemonPaths, server: Any, state: str) -> str:
    """``none``, ``bearer``, or for OAuth whether tokens are stored (``oauth (logged in)``).

    A server that is ready is logged in, wherever its tokens are (this state
    directory, or the store replicas share).
    """
    if server.auth == "oauth" and state == "ready":
        return "oauth (logged in)"
    if server.auth != "oauth":
        return str(server.auth)
    from bicameral.mcp._config import has_stored_tokens

    stored = has_stored_tokens(paths.home, server.name)
    return "oauth (logged in)" if stored else "oauth (needs login)"


def _instances(status: dict[str, Any]) -> list[dict[str, Any]]:
    """A server's instances as `mcp ps` shows them: the primary first, then the keyed ones."""
    shown = []
    for inst in status.get("instances") or []:
        if not isinstance(inst, dict):
            continue
        key = inst.get("key") or {}
        shown.append(
            {
                "name": inst.get("name"),
                "state": _SHOWN.get(str(inst.get("state")), str(inst.get("state"))),
                "pid": inst.get("pid") if isinstance(inst.get("pid"), int) else None,
                "clients": list(inst.get("clients") or []),
                "capabilities": list(key.get("capabilities") or []),
                "roots": key.get("roots"),
                "spare": bool(key.get("spare")),
            }
        )
    return shown


def control_server(
    paths: DaemonPaths, action: str, name: str, *, warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """``restart``, ``start`` or ``stop`` server `name` of the running daemon, at once.

    ``stop`` keeps it stopped until ``start``, ``restart`` or a reload that
    changes it; ``restart`` also revives a server its supervisor gave up on.
    Returns the server's new tree entry.

    With `warn`, a configuration that cannot be read is passed to it (one
    line) and the daemon alone decides whether it runs `name`.

    Raises:
      DaemonError: no daemon is running, or it refused (unknown or disabled
        server: the message says which are configured).
    """
    servers = _configured(paths, warn)
    if servers is None:
        result = call_daemon(paths, ACTIONS[action], {"name": name}, timeout=30.0)
        return dict(result) if isinstance(result, dict) else {"result": result}
    configured = {s.name: s for s in servers}
    server = configured.get(name)
    if server is None:
        known = ", ".join(configured) or "none"
        raise ConfigError(f"no MCP server named {name!r} in {paths.config} (configured: {known})")
    if not server.enabled:
        raise ConfigError(
            f"MCP server {name!r} is disabled in {paths.config}: set enabled = true "
            "and run `bicameral daemon reload`"
        )
    method = ACTIONS[action]
    result = call_daemon(paths, method, {"name": name}, timeout=30.0)
    return dict(result) if isinstance(result, dict) else {"result": result}


def view_tools(
    paths: DaemonPaths, server: str | None = None, profile: str | None = None
) -> dict[str, Any]:
    """What a client of one view of the running daemon receives from ``tools/list``.

    `server`: the one-server view (``/mcp/NAME``); else the aggregated view
    of `profile` (``None``: ``default``). Returns ``view``, ``search``,
    ``tools`` (each ``name``, ``bytes``, ``tokens``), ``total`` and
    ``catalog`` (``tools``, ``bytes``, ``tokens``: the view without search
    mode), ``problems`` and ``listed`` (whether every server has listed).

    Raises:
      DaemonError: no daemon is running, or it refused (an unknown profile
        or server: the message names those that exist).
    """
    params = {k: v for k, v in (("server", server), ("profile", profile)) if v is not None}
    result = call_daemon(paths, "mcp.tools", params, timeout=30.0)
    return dict(result) if isinstance(result, dict) else {"result": result}
