"""The CLI's fast path: the hot commands without importing Typer.

``import typer`` alone costs ~70-90 ms here, most of the 100 ms budget of
``bicameral daemon status``. So :func:`try_fast` parses, by hand, exactly the
command lines in :data:`FAST_COMMANDS` and runs them with the standard
library only (plus :mod:`bicameral.daemon`'s client side). Anything it does
not recognise (help, a typo, a bad value, another command) returns ``None``
and the caller falls through to Typer, which then produces the very same
behaviour or the proper usage error. So the fast path may decline whenever in
doubt, and must never accept a command line Typer would reject.

The command implementations (``run_start``, ``run_stop``...) and the output
rules live here too, and the Typer commands in :mod:`bicameral.cli._daemon`
call them, so both paths print byte-for-byte the same thing:

- one JSON object on stdout when stdout is not a terminal or ``--json`` is
  given, else a readable summary;
- diagnostics on stderr, one line, never a traceback for a user's error.

To add a fast command, add a row to :data:`FAST_COMMANDS`: the words after
the global options, the options it takes (rows of the daemon's options
table, `bicameral.daemon.DAEMON_OPTIONS`, parsed by its strict parser) and a
runner ``f(home, options) -> exit code``.
"""

from __future__ import annotations

import json
import sys

from bicameral.cli._errors import error, failing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from bicameral.daemon import DaemonOption, DaemonPaths

    Runner = Callable[[str | None, dict[str, Any]], int]

__all__ = [
    "FAST_COMMANDS",
    "emit",
    "run_reload",
    "run_restart",
    "run_start",
    "run_status",
    "run_stop",
    "try_fast",
]


# --- output ----------------------------------------------------------------------


def wants_json(json_flag: bool) -> bool:
    """JSON when asked for, or when stdout is not a terminal (a script reads it)."""
    if json_flag:
        return True
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    """Print ``result`` as one JSON line, or ``human`` for a person."""
    text = json.dumps(result) if as_json else human
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -0`): not worth a traceback. Point
        # stdout at /dev/null so the interpreter's final flush is quiet too.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def render_tree(node: dict[str, Any], indent: str = "  ") -> list[str]:
    """The supervisor snapshot as indented lines: name, kind, state, restarts.

    An entry that reports its own live status (an MCP server's subtree:
    ``started_value`` with ``state`` and ``health``) is one line with that
    status, its pid, tool count and uptime; its inner instance child is not
    repeated. A last error shows only while it matters: for an entry that is
    not running (or not healthy), not for one that has recovered.
    """
    import time

    lines: list[str] = []
    now = time.time()

    def walk(entry: dict[str, Any], depth: int) -> None:
        own = entry.get("started_value")
        parts = [f"{indent * depth}{entry.get('name', '?')}"]
        if isinstance(own, dict) and "health" in own and "state" in own:
            parts.append("[server]")
            state = str(own["state"]) if entry.get("state") == "running" else entry.get("state")
            parts.append(str(state))
            if own.get("pid"):
                parts.append(f"pid {own['pid']}")
            if own.get("tools") is not None and state in ("ready", "degraded"):
                parts.append(f"{own['tools']} tools")
            started = entry.get("started_at")
            if state in ("ready", "degraded", "starting") and isinstance(started, int | float):
                parts.append(f"up {_duration(max(0.0, now - started))}")
            if own.get("restarts"):
                parts.append(f"restarts={own['restarts']}")
            if own.get("health") != "ok" and own.get("last_error"):
                parts.append(f"last error: {own['last_error']}")
            lines.append(" ".join(parts))
            return
        parts += [f"[{entry.get('kind', '?')}]", str(entry.get("state", "?"))]
        restarts = entry.get("restarts") or 0
        if restarts:
            parts.append(f"restarts={restarts}")
        last = entry.get("last_exit")
        if (
            isinstance(last, dict)
            and last.get("reason") == "error"
            and entry.get("state") != "running"
        ):
            parts.append(f"last error: {last.get('error')}")
        lines.append(" ".join(parts))
        children = entry.get("children")
        if isinstance(children, list):
            for child in children:
                if isinstance(child, dict):
                    walk(child, depth + 1)

    walk(node, 1)
    return lines


def _where(result: dict[str, Any]) -> str:
    if result.get("transport") == "tcp":
        return f"tcp {result.get('address')}"
    return f"socket {result.get('socket_path')}"


# --- commands ----------------------------------------------------------------------


def _paths(home: str | None, options: dict[str, Any], *, unusable: int = 2) -> DaemonPaths:
    """The daemon's paths; an unusable one ends the command with exit `unusable`."""
    from bicameral.daemon import resolve_paths

    status = "unknown" if unusable == 4 else "failed"
    with failing(bool(options.get("json")), code=unusable, status=status):
        return resolve_paths(
            home,
            descriptor=options.get("descriptor"),
            socket=options.get("socket"),
            config=options.get("config"),
        )


def run_start(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral daemon start``: exit 0 started or already running, 1 failed."""
    from bicameral.daemon import start

    as_json = wants_json(bool(options.get("json")))
    paths = _paths(home, options)
    with failing(as_json, log_path=str(paths.log)):
        result = start(
            paths,
            wait=float(options.get("wait", 10.0)),
            transport=options.get("transport"),
            options=options,
        )
        if options.get("http") and result["status"] != "started":
            # The daemon runs already: it opens (or moves) its listener, no restart.
            from bicameral.daemon import call_daemon

            answer = call_daemon(
                paths, "system.http", {"listen": str(options["http"])}, timeout=30.0
            )
            result["http_url"] = answer.get("http_url") if isinstance(answer, dict) else None
    verb = "started" if result["status"] == "started" else "already running"
    human = f"bicameral daemon {verb} (pid {result['pid']}, {_where(result)})"
    if result.get("http_url"):
        human += f"\n  HTTP: {result['http_url']}/mcp (`bicameral mcp http` prints the header)"
    servers = result.get("servers")
    if servers:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(servers.items()))
        human += f"\n  MCP servers: {counts} (they warm up in the background)"
    emit(result, as_json, human)
    return 0


def run_stop(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral daemon stop``: exit 0 stopped, already stopped or stale; 1 failed."""
    from bicameral.daemon import stop

    as_json = wants_json(bool(options.get("json")))
    paths = _paths(home, options)
    with failing(as_json):
        result = stop(paths, timeout=float(options.get("timeout", 10.0)))
    if result["status"] == "already-stopped":
        human = "bicameral daemon is not running"
    elif result.get("stale"):
        pid = result.get("pid")
        why = result.get("reason") or f"pid {pid} was not the daemon"
        human = (
            f"removed a stale descriptor ({why})"
            if pid is not None
            else "removed an unreadable descriptor"
        )
    else:
        how = " (killed after the timeout)" if result.get("killed") else ""
        human = f"bicameral daemon stopped (pid {result['pid']}){how}"
    emit(result, as_json, human)
    return 0


def run_status(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral daemon status``: LSB exit codes 0 running, 1 stale, 3 stopped, 4 unknown."""
    from bicameral.daemon import STATUS_EXIT_CODES, status

    as_json = wants_json(bool(options.get("json")))
    paths = _paths(home, options, unusable=4)
    with failing(as_json, code=4, status="unknown", descriptor_path=str(paths.descriptor)):
        result = status(paths, timeout=float(options.get("timeout", 2.0)))
    state = result["status"]
    if state == "running":
        lines = [
            f"bicameral daemon running (pid {result['pid']}, up {_duration(result['uptime_s'])}, "
            f"version {result['daemon_version']}, health {result.get('health', '?')})",
            f"  {_where(result)}",
            f"  descriptor {result['descriptor_path']}",
        ]
        if isinstance(result.get("tree"), dict):
            lines.append("  tree:")
            lines.extend("  " + line for line in render_tree(result["tree"], "  "))
            lines.append("  (every configured MCP server, disabled ones too: bicameral mcp ps)")
        human = "\n".join(lines)
    elif state == "stopped":
        human = "bicameral daemon is not running"
    elif state == "stale":
        human = (
            f"stale descriptor {result['descriptor_path']} (pid {result['pid']} is not the "
            "daemon); `bicameral daemon stop` cleans it up"
        )
    elif state == "stopping":
        human = f"bicameral daemon pid {result['pid']} is stopping"
    elif state == "starting":
        # It holds the lock without a descriptor: not published yet, or
        # already withdrawn on its way out.
        human = (
            f"bicameral daemon pid {result['pid'] or '?'} holds the lock but has no descriptor: "
            "it is starting or stopping"
        )
    else:
        why = result.get("error") or "no answer"
        human = (
            f"bicameral daemon pid {result['pid']} is not answering ({why}); "
            "try `bicameral daemon stop`"
        )
        error(f"daemon pid {result['pid']} is not answering: {why}")
    emit(result, as_json, human)
    return STATUS_EXIT_CODES[state]


def run_reload(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral daemon reload``: apply config.toml's changes to the running daemon.

    Exit 0 when reloaded, 3 when no daemon runs (nothing to reload; the next
    start reads the file anyway), 1 when the daemon rejected the file (it
    keeps running as it was) or did not answer.
    """
    from bicameral.daemon import reload

    as_json = wants_json(bool(options.get("json")))
    paths = _paths(home, options)
    with failing(as_json):
        result = reload(paths)
    if result["status"] != "reloaded":
        human = "bicameral daemon is not running: nothing to reload"
        emit(result, as_json, human)
        return 3
    changes = [
        f"{key} {', '.join(result[key])}"
        for key in ("added", "removed", "restarted", "failed", "http")
        if result.get(key)
    ]
    human = f"bicameral daemon reloaded (pid {result['pid']}): " + (
        "; ".join(changes) if changes else "no change"
    )
    servers = result.get("servers")
    if isinstance(servers, dict) and servers:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(servers.items()))
        human += f"\n  MCP servers: {counts}"
    emit(result, as_json, human)
    return 1 if result.get("failed") else 0


def run_restart(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral daemon restart``: stop if running, then start; prints ``previous_pid``."""
    from bicameral.daemon import restart

    as_json = wants_json(bool(options.get("json")))
    paths = _paths(home, options)
    with failing(as_json, log_path=str(paths.log)):
        result = restart(
            paths,
            wait=float(options.get("wait", 10.0)),
            timeout=float(options.get("timeout", 10.0)),
            transport=options.get("transport"),
            options=options,
        )
    previous = result.get("previous_pid")
    was = f", was pid {previous}" if previous is not None else ""
    human = f"bicameral daemon started (pid {result['pid']}{was}, {_where(result)})"
    if result.get("http_url"):
        human += f"\n  HTTP: {result['http_url']}/mcp (`bicameral mcp http` prints the header)"
    emit(result, as_json, human)
    return 0


def run_mcp(home: str | None, options: dict[str, Any]) -> int:
    """``bicameral mcp [--server NAME | --profile NAME]``: the MCP stdio bridge (stdlib only)."""
    from bicameral.mcp import run_bridge

    return run_bridge(home, options.get("server"), options.get("profile"))


# --- the parser ------------------------------------------------------------------------


def _daemon_command(command: str) -> list[DaemonOption]:
    from bicameral.daemon import daemon_options

    return daemon_options(command, hidden=False)


def _mcp_options() -> list[DaemonOption]:
    from bicameral.daemon import DaemonOption

    return [
        DaemonOption("server", "path", "", ("mcp",)),
        DaemonOption("profile", "path", "", ("mcp",)),
    ]


FAST_COMMANDS: dict[tuple[str, ...], tuple[list[DaemonOption], Runner]] = {
    ("daemon", "start"): (_daemon_command("start"), run_start),
    ("daemon", "stop"): (_daemon_command("stop"), run_stop),
    ("daemon", "status"): (_daemon_command("status"), run_status),
    ("mcp",): (_mcp_options(), run_mcp),
}
"""Command words -> (options, runner); the daemon's options are its table's."""


def try_fast(argv: list[str]) -> int | None:
    """Run ``argv`` if it is a fast command; its exit code, or ``None`` to use Typer."""
    from bicameral.daemon import parse_options

    i = 0
    home: str | None = None
    while i < len(argv) and argv[i].startswith("--home"):
        name, eq, inline = argv[i].partition("=")
        if name != "--home":
            return None
        if eq:
            home, i = inline, i + 1
        elif i + 1 < len(argv):
            home, i = argv[i + 1], i + 2
        else:
            return None
    # Longest command first, so ("mcp", "list") would win over ("mcp",).
    for words in sorted(FAST_COMMANDS, key=len, reverse=True):
        end = i + len(words)
        if tuple(argv[i:end]) == words:
            spec, runner = FAST_COMMANDS[words]
            options = parse_options(argv[end:], spec)
            if options is not None:
                return runner(home, options)
    return None
