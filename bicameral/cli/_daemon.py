"""``bicameral daemon ...``: the Typer sub-application.

Thin by design: each command turns its options into the dict the fast path's
runners take (:mod:`bicameral.cli._fast`) and exits with their code, so a
command behaves identically whether the fast path or Typer parsed it. Typer
sees ``start``, ``stop`` and ``status`` only for ``--help`` and for command
lines the fast path declined (usually because they are wrong, and Typer's
usage error is the right answer).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from bicameral.cli import _fast
from bicameral.cli._context import complete_server, root_home
from bicameral.cli._usage import OneLineGroup

__all__ = ["daemon_app"]

daemon_app = typer.Typer(
    name="daemon",
    cls=OneLineGroup,
    help="Start, stop and inspect the per-user bicameral daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Transport(enum.StrEnum):
    """How clients reach the daemon."""

    unix = "unix"
    tcp = "tcp"


class LogFormat(enum.StrEnum):
    """How the daemon writes its log."""

    text = "text"
    json = "json"


class LogLevel(enum.StrEnum):
    """The least severe log records the daemon writes."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        help="debug, info (default), warning or error (also $BICAMERAL_LOG_LEVEL).",
    ),
]


SocketOpt = Annotated[
    Path | None,
    typer.Option("--socket", help="Unix socket path (default: <home>/daemon.sock)."),
]
DescriptorOpt = Annotated[
    Path | None,
    typer.Option("--descriptor", help="Descriptor path (default: <home>/daemon.json)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Configuration file (default: <home>/config.toml)."),
]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", min=0.0, help="Seconds to wait for the daemon to be ready."),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.0, help="Seconds of graceful stop before SIGKILL."),
]
AnswerTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.0,
        help="Seconds to wait for the daemon's answer before reporting it unresponsive.",
    ),
]
TransportOpt = Annotated[
    Transport | None,
    typer.Option(
        "--transport",
        case_sensitive=True,
        help="unix (default; tcp on Windows) or tcp: loopback TCP with a token.",
    ),
]
HttpOpt = Annotated[
    str | None,
    typer.Option(
        "--http",
        metavar="HOST:PORT",
        help="Also serve MCP clients over streamable HTTP on HOST:PORT "
        "(overrides [daemon.http] listen).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object even on a terminal.")]


def _options(**values: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        if isinstance(value, Transport):
            options[name] = value.value
        elif isinstance(value, Path):
            options[name] = str(value)
        else:
            options[name] = value
    return options


@daemon_app.command()
def start(
    ctx: typer.Context,
    *,
    socket: SocketOpt = None,
    descriptor: DescriptorOpt = None,
    config: ConfigOpt = None,
    wait: WaitOpt = 10.0,
    transport: TransportOpt = None,
    http: HttpOpt = None,
    log_level: LogLevelOpt = None,
    json: JsonOpt = False,
) -> None:
    """Start the daemon in the background; returns once it answers."""
    options = _options(
        socket=socket,
        descriptor=descriptor,
        config=config,
        wait=wait,
        transport=transport,
        http=http,
        log_level=log_level,
        json=json,
    )
    raise typer.Exit(_fast.run_start(root_home(ctx, check=False), options))


@daemon_app.command()
def stop(
    ctx: typer.Context,
    *,
    descriptor: DescriptorOpt = None,
    timeout: TimeoutOpt = 10.0,
    json: JsonOpt = False,
) -> None:
    """Stop the daemon: SIGTERM, then SIGKILL after --timeout seconds."""
    options = _options(descriptor=descriptor, timeout=timeout, json=json)
    raise typer.Exit(_fast.run_stop(root_home(ctx, check=False), options))


@daemon_app.command()
def restart(
    ctx: typer.Context,
    *,
    socket: SocketOpt = None,
    descriptor: DescriptorOpt = None,
    config: ConfigOpt = None,
    wait: WaitOpt = 10.0,
    timeout: TimeoutOpt = 10.0,
    transport: TransportOpt = None,
    http: HttpOpt = None,
    json: JsonOpt = False,
) -> None:
    """Stop the daemon if it runs, then start it; prints the previous pid."""
    options = _options(
        socket=socket,
        descriptor=descriptor,
        config=config,
        wait=wait,
        timeout=timeout,
        transport=transport,
        http=http,
        json=json,
    )
    raise typer.Exit(_fast.run_restart(root_home(ctx, check=False), options))


@daemon_app.command()
def status(
    ctx: typer.Context,
    *,
    descriptor: DescriptorOpt = None,
    timeout: AnswerTimeoutOpt = 2.0,
    json: JsonOpt = False,
) -> None:
    """Show whether the daemon runs, and its supervisor tree.

    Exit codes (LSB): 0 running, 1 stale descriptor, 3 stopped, 4 unresponsive
    or unknown.
    """
    options = _options(descriptor=descriptor, timeout=timeout, json=json)
    raise typer.Exit(_fast.run_status(root_home(ctx, check=False), options))


@daemon_app.command()
def reload(
    ctx: typer.Context,
    *,
    descriptor: DescriptorOpt = None,
    json: JsonOpt = False,
) -> None:
    """Apply config.toml's changes to the running daemon; unchanged servers keep running."""
    options = _options(descriptor=descriptor, json=json)
    raise typer.Exit(_fast.run_reload(root_home(ctx, check=False), options))


@daemon_app.command()
def serve(
    ctx: typer.Context,
    *,
    socket: SocketOpt = None,
    descriptor: DescriptorOpt = None,
    config: ConfigOpt = None,
    transport: TransportOpt = None,
    http: HttpOpt = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="text (default) or json: one JSON object per log line. "
            "For a detached daemon set BICAMERAL_LOG_FORMAT=json before `daemon start`.",
        ),
    ] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run the daemon in the foreground (for systemd, launchd, containers)."""
    if log_level is not None:
        import os

        os.environ["BICAMERAL_LOG_LEVEL"] = log_level.value
    from bicameral.daemon import ServeOptions, default_transport, resolve_paths
    from bicameral.daemon import serve as serve_daemon

    paths = resolve_paths(
        root_home(ctx),
        descriptor=str(descriptor) if descriptor else None,
        socket=str(socket) if socket else None,
        config=str(config) if config else None,
    )
    chosen = transport.value if transport is not None else default_transport()
    options = ServeOptions(
        paths, transport=chosen, log_format=log_format.value if log_format else None, http=http
    )
    raise typer.Exit(serve_daemon(options))


@daemon_app.command()
def logs(
    ctx: typer.Context,
    *,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="Lines to show.")] = 50,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines, waiting for the log if needed."
        ),
    ] = False,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="NAME",
            help="Only this MCP server's lines.",
            autocompletion=complete_server,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="WHEN", help="Only lines since: 10m, 2h, 1d or 2026-11-30 14:00."
        ),
    ] = None,
    descriptor: DescriptorOpt = None,
) -> None:
    """Show the end of the detached daemon's log (daemon.log); --follow keeps reading."""
    import sys

    from bicameral.daemon import (
        DaemonError,
        LogFilter,
        follow_log,
        parse_since,
        resolve_paths,
        tail_log,
    )

    try:
        paths = resolve_paths(root_home(ctx), descriptor=str(descriptor) if descriptor else None)
        if server is not None:
            _check_server_name(paths, server)
        keep = LogFilter(server, parse_since(since) if since else None)
        if not follow:
            sys.stdout.writelines(tail_log(paths.log, lines, keep))
            return
        for line in follow_log(paths.log, lines, keep=keep):
            sys.stdout.write(line)
            sys.stdout.flush()
    except DaemonError as exc:
        _fast.error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _check_server_name(paths: Any, server: str) -> None:
    """`--server NAME` that names no server is a DaemonError naming the configured ones.

    A server is one config.toml has, or one the log has lines of (removed
    since, its history is still worth reading). A file that cannot be read
    now (half-edited) does not block reading the log.
    """
    from bicameral.daemon import ConfigError, DaemonError, LogFilter, tail_log
    from bicameral.mcp import list_servers

    try:
        names = [s.name for s in list_servers(paths.config, must_exist=paths.config_explicit)]
    except ConfigError:
        return
    if server in names:
        return
    try:
        logged = bool(tail_log(paths.log, 1, LogFilter(server, None)))
    except DaemonError:
        logged = False
    if not logged:
        raise DaemonError(
            f"no MCP server named {server!r} in {paths.config} "
            f"(configured: {', '.join(names) or 'none'})"
        )


@daemon_app.command()
def install(
    ctx: typer.Context,
    *,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the service file instead of writing it.")
    ] = False,
) -> None:
    """Write a per-user service: systemd (Linux), launchd (macOS), a logon task (Windows)."""
    import sys

    from bicameral.daemon import DaemonError, install_service, resolve_paths, service_for

    paths = resolve_paths(root_home(ctx))
    try:
        if print_only:
            sys.stdout.write(service_for(paths).text)
            return
        target, hint = install_service(paths)
    except DaemonError as exc:
        _fast.error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"wrote {target}\nstart it with: {hint}")


@daemon_app.command()
def uninstall(ctx: typer.Context) -> None:
    """Remove the service file that `install` wrote (stop and disable it first)."""
    from bicameral.daemon import DaemonError, uninstall_service

    try:
        removed = uninstall_service()
    except DaemonError as exc:
        _fast.error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"removed {removed}" if removed else "nothing to remove (no service file)")
