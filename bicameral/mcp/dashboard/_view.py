"""What the dashboard shows, taken in-process and rendered as HTML fragments.

The numbers are the ones ``bicameral mcp ps`` and ``/metrics`` show, from
the same places: the supervisor's snapshot (``adapters.list``), each
server's status (``mcp.servers``), :func:`bicameral.mcp._ps.join_rows`
joining them with the configuration, the registry's ring of recent calls
(fed where ``/metrics`` counts them) and the daemon log's lines of a
server's stderr (``daemon logs --server``).

`fingerprint` is cheap (a tuple of states and counters, no I/O): the event
stream compares it every `TICK` seconds and rebuilds only when it changed,
or every `REFRESH` seconds for uptimes and memory. A rebuild reads the
config and the processes' memory in a worker thread, never on the loop.
Every value put in the HTML is escaped.
"""

from __future__ import annotations

import html
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.daemon import DaemonHost
    from bicameral.mcp._registry import Registry

__all__ = ["CALLS_SHOWN", "REFRESH", "STDERR_LINES", "TICK", "View"]

TICK = 0.2
REFRESH = 5.0
CALLS_SHOWN = 40
STDERR_LINES = 40

_e = html.escape


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "-"  # pragma: no cover


class View:
    """The daemon's state for people: built from the host and the MCP registry."""

    def __init__(self, host: DaemonHost, registry: Registry) -> None:
        self.host = host
        self.registry = registry
        # The process table (memory) is read at most every REFRESH seconds,
        # the config only when its file changed: a state change shows at once.
        self._processes: Any = None
        self._processes_at = 0.0
        self._config: tuple[Any, list[Any]] = (None, [])

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever anything the page shows changes (but uptimes and memory)."""
        adapters = tuple((c.name, c.state, c.restarts) for c in self.host.adapters.children)
        servers = tuple(
            (
                up.name,
                up.state,
                up.restarts,
                len(up.peers),
                len(up.lists["tools"]),
                tuple((i.name, i.state, i.pid) for i in up.instances.values()),
            )
            for up in self.registry.active()
        )
        return adapters, servers, self.registry.recent.count

    async def build(self) -> dict[str, Any]:
        """Everything the page shows, as plain data."""
        import trio

        from bicameral.mcp._ps import join_rows, process_table

        paths = self.host.paths
        tree = self.host.snapshot()
        adapters = self.host.adapters.snapshot().get("children", [])
        live = [{"name": up.name, **up.status()} for up in self.registry.active()]
        tools = {
            up.name: len(json.dumps(up.lists["tools"], default=str))
            for up in self.registry.active()
        }

        def rows() -> dict[str, Any]:
            now = time.monotonic()
            if self._processes is None or now - self._processes_at >= REFRESH:
                self._processes, self._processes_at = process_table(), now
            return join_rows(paths, self._configured(), adapters, live, processes=self._processes)

        try:
            joined = await trio.to_thread.run_sync(rows)
        except Exception as exc:  # a config being edited: say so, keep the page
            joined = {"servers": [], "error": str(exc)}
        for row in joined["servers"]:
            row["tools_bytes"] = tools.get(row["name"])
        calls = [
            {
                "at": at,
                "server": server,
                "method": method,
                "ms": round(seconds * 1000, 1),
                "ok": not failed,
            }
            for at, server, method, seconds, failed in list(self.registry.recent.items)[
                -CALLS_SHOWN:
            ]
        ][::-1]
        return {
            "daemon": {
                "pid": self.host.pid,
                "uptime_s": time.time() - self.host.started_at,
                "home": str(paths.home),
            },
            "tree": tree,
            "servers": joined["servers"],
            "error": joined.get("error"),
            "calls": calls,
        }

    def _configured(self) -> list[Any]:
        """The configured servers, read again only when config.toml changed."""
        import os

        from bicameral.mcp._config_edit import list_servers

        config = self.host.paths.config
        try:
            st = os.stat(config)
            mark: Any = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            mark = None
        if mark is None or mark != self._config[0]:
            self._config = (mark, list_servers(config))
        return self._config[1]

    async def stderr(self, name: str) -> list[str]:
        """The last `STDERR_LINES` lines server `name` wrote on stderr (from the daemon log)."""
        import trio

        from bicameral.daemon import LogFilter, tail_log

        paths = self.host.paths
        marker = f"bicameral.mcp.server.{name}["

        def read() -> list[str]:
            try:
                lines = tail_log(paths.log, 2000, LogFilter(server=name))
            except OSError:
                return []
            return [line.rstrip("\n") for line in lines if marker in line][-STDERR_LINES:]

        return await trio.to_thread.run_sync(read)


# --- rendering ------------------------------------------------------------------------


def render(state: dict[str, Any]) -> dict[str, str]:
    """The page's live parts as HTML: ``summary``, ``servers``, ``tree``, ``calls``."""
    return {
        "summary": _summary(state),
        "servers": _servers(state),
        "tree": _tree(state["tree"]),
        "calls": _calls(state["calls"]),
    }


def _summary(state: dict[str, Any]) -> str:
    servers = state["servers"]
    ready = sum(1 for s in servers if s["state"] == "ready")
    daemon = state["daemon"]
    text = (
        f"daemon pid {daemon['pid']} · up {_duration(daemon['uptime_s'])} · "
        f"{ready}/{len(servers)} servers ready"
    )
    if state.get("error"):
        text += f" · config: {state['error']}"
    return _e(text)


_BUTTONS = ("restart", "stop", "start")


def _servers(state: dict[str, Any]) -> str:
    if not state["servers"]:
        return '<p class="empty">No MCP servers configured (bicameral mcp add NAME -- COMMAND).</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "server", "state", "pid", "uptime", "restarts", "memory",
            "tools", "clients", "last error", "",
        )
    )  # fmt: skip
    rows = []
    for s in state["servers"]:
        name = _e(s["name"])
        instances = s.get("instances") or []
        pids = ", ".join(str(i["pid"]) for i in instances if i.get("pid")) or (
            "remote" if s.get("url") else "-"
        )
        tools = f"{s['tools']} ({_size(s.get('tools_bytes'))})" if s["tools"] else "-"
        # As `mcp ps`: an error is news while the server is not ready or has restarted.
        error = s["last_error"] if s["state"] != "ready" or s["restarts"] else None
        idle = {"stop": ("stopped", "disabled"), "start": ("ready", "starting", "backoff")}
        buttons = "".join(
            f'<button type="submit" name="action" value="{a}"'
            f"{' disabled' if s['state'] in idle.get(a, ()) else ''}>{a}</button>"
            for a in _BUTTONS
        )
        rows.append(
            f'<tr data-server="{name}">'
            f'<td class="name"><a href="#" class="stderr" data-server="{name}">{name}</a></td>'
            f'<td class="state"><span class="state {_e(s["state"])}">{_e(s["state"])}</span></td>'
            f"<td>{_e(pids)}</td>"
            f"<td>{_duration(s['uptime_s'])}</td>"
            f"<td>{s['restarts']}</td>"
            f"<td>{_size(s['memory_bytes'])}</td>"
            f"<td>{_e(tools)}</td>"
            f"<td>{'-' if s['clients'] is None else s['clients']}</td>"
            f'<td class="error">{_e(error or "")}</td>'
            f'<td><form method="post" action="/dashboard/action" class="action">'
            f'<input type="hidden" name="server" value="{name}">{buttons}</form></td>'
            "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _tree(root: dict[str, Any]) -> str:
    """The supervisor tree as nested lists (iteratively: a deep tree is no problem)."""
    out: list[str] = []
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        kind = "sup" if item.get("kind") == "supervisor" else "worker"
        extra = f" · {item['strategy']}" if item.get("strategy") else ""
        restarts = f" · {item['restarts']} restarts" if item.get("restarts") else ""
        out.append(
            f'<li class="{kind}"><span class="state {_e(str(item.get("state")))}">'
            f"{_e(str(item.get('state')))}</span> {_e(str(item.get('name')))}"
            f'<span class="dim">{_e(extra + restarts)}</span>'
        )
        children = item.get("children") or []
        stack.append("</li>")
        if children:
            stack.append("</ul>")
            stack.extend(reversed(children))
            stack.append("<ul>")
    return f'<ul class="tree">{"".join(out)}</ul>'


def _calls(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return '<p class="empty">No calls yet.</p>'
    rows = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(c['at']))}</td>"
        f"<td>{_e(c['server'])}</td><td>{_e(c['method'])}</td>"
        f'<td class="num">{c["ms"]:.1f} ms</td>'
        f'<td class="{"ok" if c["ok"] else "bad"}">{"ok" if c["ok"] else "error"}</td></tr>'
        for c in calls
    )
    head = "<tr><th>time</th><th>server</th><th>method</th><th>latency</th><th>outcome</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def render_stderr(name: str, lines: list[str]) -> str:
    body = "\n".join(lines) or "(nothing on stderr in the daemon log)"
    return f"<h3>stderr of {_e(name)}</h3><pre>{_e(body)}</pre>"
