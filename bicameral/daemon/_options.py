"""The daemon's command-line options, declared once.

Every option of ``bicameral daemon start|stop|restart|status|reload|serve``
(and the few ``doctor`` and ``logs`` share) is a row of :data:`DAEMON_OPTIONS`:
its name, kind, help, the commands that take it and its default.
Everything else is made from the table:

- the CLI's Typer options (`bicameral.cli`) and its fast path's parser;
- ``python -m bicameral.daemon serve``'s parsers (`bicameral.daemon.__main__`);
- the command lines that run the daemon: the one ``start`` spawns
  (`serve_args`) and the one a service file runs (`service_argv`).

Options travel to the spawned daemon in its argv. The environment only
gives defaults a user may set (``$BICAMERAL_LOG_LEVEL``,
``$BICAMERAL_LOG_FORMAT``), read in one place (`env_default`).

Values are kept in a dict keyed by the option's name (``"log-level"``);
paths and texts are strings, numbers floats, flags ``True``. This module
imports nothing (the CLI's fast path and the spawned daemon read it before
anything else).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "DAEMON_OPTIONS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "DaemonOption",
    "daemon_options",
    "env_default",
    "parse_options",
    "serve_args",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TRANSPORTS = ("unix", "tcp")


class DaemonOption:
    """One option: ``--NAME`` of `kind` for `commands`.

    `kind` is ``"path"`` (a non-empty string), ``"text"``, ``"float"`` (not
    negative), ``"flag"``, or a tuple of the values it may take. The options
    of ``serve`` are those a spawned daemon receives in its argv. `env`
    names the variable that gives the daemon its default; `hidden` ones are
    for the daemon's own command line only (the CLI has ``--home`` as a
    global option, and no ``--detached``).
    """

    __slots__ = (
        "commands",
        "default",
        "env",
        "help",
        "hidden",
        "kind",
        "metavar",
        "name",
    )

    def __init__(
        self,
        name: str,
        kind: str | tuple[str, ...],
        help: str,
        commands: tuple[str, ...],
        *,
        default: Any = None,
        metavar: str | None = None,
        env: str | None = None,
        hidden: bool = False,
    ) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.commands = commands
        self.default = default
        self.metavar = metavar
        self.env = env
        self.hidden = hidden

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def key(self) -> str:
        """The name as a Python identifier (``log_level``)."""
        return self.name.replace("-", "_")

    def convert(self, raw: str) -> Any:
        """The value of ``--NAME raw``, or ``None`` when it is not one."""
        if isinstance(self.kind, tuple):
            return raw if raw in self.kind else None
        if self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                return None
            return value if value >= 0 else None
        if self.kind == "path":
            return raw or None
        if self.kind == "text":
            return raw
        return None


_STARTS = ("start", "restart")
_RUNS = ("start", "restart", "serve")

DAEMON_OPTIONS: tuple[DaemonOption, ...] = (
    DaemonOption(
        "detached",
        "flag",
        "Log to daemon.log instead of stderr (the daemon `start` spawns).",
        ("serve",),
        hidden=True,
    ),
    DaemonOption(
        "home",
        "path",
        "State directory (default: $BICAMERAL_HOME or ~/.bicameral).",
        ("serve",),
        hidden=True,
    ),
    DaemonOption(
        "socket",
        "path",
        "Unix socket path (default: <home>/daemon.sock).",
        (*_RUNS, "doctor"),
    ),
    DaemonOption(
        "descriptor",
        "path",
        "Descriptor path (default: <home>/daemon.json).",
        ("start", "stop", "restart", "status", "reload", "serve", "logs", "doctor"),
    ),
    DaemonOption(
        "config",
        "path",
        "Configuration file (default: <home>/config.toml).",
        (*_RUNS, "doctor"),
    ),
    DaemonOption(
        "wait", "float", "Seconds to wait for the daemon to be ready.", _STARTS, default=10.0
    ),
    DaemonOption(
        "timeout",
        "float",
        "Seconds of graceful stop before SIGKILL.",
        ("stop", "restart"),
        default=10.0,
    ),
    DaemonOption(
        "timeout",
        "float",
        "Seconds to wait for the daemon's answer before reporting it unresponsive.",
        ("status",),
        default=2.0,
    ),
    DaemonOption(
        "transport",
        TRANSPORTS,
        "unix (default; tcp on Windows) or tcp: loopback TCP with a token.",
        _RUNS,
    ),
    DaemonOption(
        "http",
        "text",
        "Also serve MCP clients over streamable HTTP on HOST:PORT "
        "(overrides [daemon.http] listen).",
        _RUNS,
        metavar="HOST:PORT",
    ),
    DaemonOption(
        "log-level",
        LOG_LEVELS,
        "debug, info (default), warning or error (also $BICAMERAL_LOG_LEVEL).",
        _RUNS,
        env="BICAMERAL_LOG_LEVEL",
    ),
    DaemonOption(
        "log-format",
        LOG_FORMATS,
        "text (default) or json: one JSON object per log line. "
        "For a detached daemon set BICAMERAL_LOG_FORMAT=json before `daemon start`.",
        ("serve",),
        env="BICAMERAL_LOG_FORMAT",
    ),
    DaemonOption(
        "json",
        "flag",
        "Print one JSON object even on a terminal.",
        ("start", "stop", "restart", "status", "reload", "doctor"),
    ),
)
"""Every option of the daemon's commands, in the order help and argv list them."""


def daemon_options(command: str, *, hidden: bool = True) -> list[DaemonOption]:
    """The options `command` takes (``"start"``, ``"serve"``...), in table order."""
    return [o for o in DAEMON_OPTIONS if command in o.commands and (hidden or not o.hidden)]


def parse_options(args: Iterable[str], options: Iterable[DaemonOption]) -> dict[str, Any] | None:
    """``--name value``, ``--name=value`` and ``--flag`` of `options`; ``None`` for anything else.

    Strict on purpose: an unknown option, a bad value or a missing one
    declines (the caller's full parser then says what is wrong). The last
    occurrence of an option wins, as in Click.
    """
    spec = {o.flag: o for o in options}
    items = list(args)
    values: dict[str, Any] = {}
    i = 0
    while i < len(items):
        name, eq, inline = items[i].partition("=")
        option = spec.get(name)
        if option is None:
            return None
        if option.kind == "flag":
            if eq:
                return None
            values[option.name] = True
            i += 1
            continue
        if eq:
            raw, i = inline, i + 1
        elif i + 1 < len(items):
            raw, i = items[i + 1], i + 2
        else:
            return None
        value = option.convert(raw)
        if value is None:
            return None
        values[option.name] = value
    return values


def serve_args(values: Mapping[str, Any]) -> list[str]:
    """``serve`` and the options of `values` the daemon takes, as its argv says them."""
    argv = ["serve"]
    for option in daemon_options("serve"):
        value = values.get(option.name)
        if value is None or value is False:
            continue
        if option.kind == "flag":
            argv.append(option.flag)
        else:
            argv += [option.flag, str(value)]
    return argv


def env_default(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The default the environment gives option `name` (``$BICAMERAL_LOG_LEVEL``...)."""
    import os

    env = next((o.env for o in DAEMON_OPTIONS if o.name == name and o.env), None)
    if env is None:
        return None
    return (os.environ if environ is None else environ).get(env) or None
