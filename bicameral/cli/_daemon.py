"""``bicameral daemon ...``: the Typer sub-application.

Thin by design: the commands and their options are made from the daemon's
options table (:mod:`bicameral.cli._options`), and each hands the option
values to the runner the fast path calls too (:mod:`bicameral.cli._fast`)
and exits with its code, so a command behaves identically whether the fast
path or Typer parsed it. Typer sees ``start``, ``stop`` and ``status`` only
for ``--help`` and for command lines the fast path declined (usually because
they are wrong, and Typer's usage error is the right answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bicameral.cli import _fast
from bicameral.cli._context import complete_server, root_home
from bicameral.cli._options import daemon_option, table_command
from bicameral.cli._usage import OneLineGroup

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["daemon_app"]

daemon_app = typer.Typer(
    name="daemon",
    cls=OneLineGroup,
    help="Start, stop and inspect the per-user bicameral daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _runner(
    run: Callable[[str | None, dict[str, Any]], int],
) -> Callable[[typer.Context, dict[str, Any]], int]:
    """A fast-path runner as a table command's: the root's ``--home``, then the options."""
    return lambda ctx, options: run(root_home(ctx, check=False), options)


@table_command(daemon_app, "start", _runner(_fast.run_start))
def start() -> None:
    """Start the daemon in the background; returns once it answers."""


@table_command(daemon_app, "stop", _runner(_fast.run_stop))
def stop() -> None:
    """Stop the daemon: SIGTERM, then SIGKILL after --timeout seconds."""


@table_command(daemon_app, "restart", _runner(_fast.run_restart))
def restart() -> None:
    """Stop the daemon if it runs, then start it; prints the previous pid."""


@table_command(daemon_app, "status", _runner(_fast.run_status))
def status() -> None:
    """Show whether the daemon runs, and its supervisor tree.

    Exit codes (LSB): 0 running, 1 stale descriptor, 3 stopped, 4 unresponsive
    or unknown.
    """


@table_command(daemon_app, "reload", _runner(_fast.run_reload))
def reload() -> None:
    """Apply config.toml's changes to the running daemon; unchanged servers keep running."""


def _serve(ctx: typer.Context, options: dict[str, Any]) -> int:
    from bicameral.daemon import run_serve

    return run_serve({**options, "home": root_home(ctx)})


@table_command(daemon_app, "serve", _serve)
def serve() -> None:
    """Run the daemon in the foreground (for systemd, launchd, containers)."""


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
    descriptor: Annotated[Path | None, daemon_option("descriptor")] = None,
) -> None:
    """Show the end of the detached daemon's log (daemon.log); --follow keeps reading."""
    import sys

    from bicameral.daemon import (
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

    from bicameral.daemon import install_service, resolve_paths, service_for

    paths = resolve_paths(root_home(ctx))
    if print_only:
        sys.stdout.write(service_for(paths).text)
        return
    target, hint = install_service(paths)
    typer.echo(f"wrote {target}\nstart it with: {hint}")


@daemon_app.command()
def uninstall(ctx: typer.Context) -> None:
    """Remove the service file that `install` wrote (stop and disable it first)."""
    from bicameral.daemon import uninstall_service

    removed = uninstall_service()
    typer.echo(f"removed {removed}" if removed else "nothing to remove (no service file)")
