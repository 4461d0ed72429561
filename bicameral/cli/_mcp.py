"""``bicameral mcp ...``: the stdio bridge and the MCP server configuration commands.

- ``bicameral mcp [--server NAME]`` (no subcommand) runs the stdio bridge MCP
  clients launch (:func:`bicameral.mcp.run_bridge`); the CLI's fast path
  normally runs it before Typer is even imported, this callback covers the
  rest (``--server=NAME`` spellings and the like).
- ``add``, ``remove``, ``list`` and ``import`` edit and show
  ``[mcp.servers.*]`` in ``config.toml`` (:mod:`bicameral.mcp._config_edit`),
  keeping the user's comments.

Output follows the daemon commands: JSON on stdout when it is not a terminal
or ``--json`` is given, a readable line or table otherwise; diagnostics, and
every user error, as one line on stderr (exit 1 for a bad file or an unknown
server, 2 for a bad command line), never a traceback.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from bicameral.cli import _fast
from bicameral.cli._context import complete_server, root_home
from bicameral.cli._errors import failed, failing
from bicameral.cli._mcp_tools import offered_cell, schema_cell
from bicameral.cli._options import daemon_option
from bicameral.cli._table import table
from bicameral.cli._usage import OneLineGroup, UsageError

if TYPE_CHECKING:
    from bicameral.mcp import ServerConfig

__all__ = ["mcp_app"]

_COMMAND_KEY = "bicameral.mcp.add.command"
_ADD_USAGE = (
    "bicameral mcp add NAME [--env K=V ...] [--cwd DIR] -- COMMAND [ARGS...]"
    " (or: bicameral mcp add NAME --url URL [--header K=V ...] [--bearer TOKEN])"
)


class _AddCommand(TyperCommand):
    """``mcp add``: everything after the first ``--`` is the server's command line.

    Click would parse options there (``-y`` of ``npx -y pkg``) as ours, so the
    split happens before Click sees the arguments.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta[_COMMAND_KEY] = args[i + 1 :]
            args = args[:i]
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            if _COMMAND_KEY not in ctx.meta and type(exc).__name__ == "NoSuchOption":
                message = f"{exc.format_message()}: put the server's command after `--`"
                raise failed(f"{message}: {_ADD_USAGE}", code=2) from None
            raise


mcp_app = typer.Typer(
    name="mcp",
    cls=OneLineGroup,
    help=(
        "Run the MCP stdio bridge (no subcommand), edit the MCP servers in config.toml "
        "(add, remove, list, import), or control the running ones (ps, restart, start, stop)."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path | None, daemon_option("config")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON even on a terminal.")]
ReloadOpt = Annotated[
    bool,
    typer.Option("--reload", help="Apply the change to the running daemon at once (a reload)."),
]


# --- helpers -----------------------------------------------------------------------------


def _config_path(ctx: typer.Context, config: Path | None) -> Path:
    from bicameral.daemon import resolve_paths

    return resolve_paths(root_home(ctx), config=config).config


def _warn(message: str) -> None:
    """One warning line on stderr (the command goes on)."""
    sys.stderr.write(f"bicameral: warning: {message}\n")
    sys.stderr.flush()


def _reload_hint(ctx: typer.Context, reload: bool = False) -> None:
    """Apply the edit to a running daemon (`reload`), or say how to (stderr, one line)."""
    if reload:
        from bicameral.daemon import reload as reload_daemon
        from bicameral.daemon import resolve_paths

        with failing(None, prefix="the edit is saved, but the reload failed: "):
            outcome = reload_daemon(resolve_paths(root_home(ctx)))
        if outcome.get("status") == "reloaded":
            changes = ", ".join(
                f"{key} {', '.join(outcome[key])}"
                for key in ("added", "removed", "restarted")
                if outcome.get(key)
            )
            sys.stderr.write(f"bicameral: reloaded the daemon: {changes or 'no change'}\n")
        else:
            sys.stderr.write("bicameral: no daemon is running; the change applies when it starts\n")
        return
    try:
        from bicameral.daemon import inspect, resolve_paths

        inspection = inspect(resolve_paths(root_home(ctx)))
    except Exception:  # a hint only: never fail the edit that already succeeded
        return
    if inspection.state == "alive" and inspection.descriptor is not None:
        sys.stderr.write(
            f"bicameral: the daemon (pid {inspection.descriptor.pid}) is running; "
            "run `bicameral daemon reload` to apply the change\n"
        )


def _parse_env(values: list[str], what: str = "--env") -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not eq or not key or "\x00" in value:
            raise failed(f"{what} expects NAME=VALUE, got {value!r}", code=2)
        env[key] = val
    return tuple(sorted(env.items()))


def _server_dict(server: ServerConfig) -> dict[str, Any]:
    if server.remote:
        return {
            "name": server.name,
            "url": server.url,
            "transport": server.transport,
            "headers": sorted(k for k, _ in server.headers),  # names only: values may be secret
            "auth": server.auth,
            "enabled": server.enabled,
            "share": server.share,
        }
    return {
        "name": server.name,
        "command": server.command,
        "args": list(server.args),
        "env": server.env_dict(),
        "cwd": server.cwd,
        "enabled": server.enabled,
        "share": server.share,
    }


# --- the bridge --------------------------------------------------------------------------


@mcp_app.callback()
def _mcp(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Expose only this server, under its own tool names (default: all, aggregated).",
            autocompletion=complete_server,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="The view of [mcp.profiles.NAME] (docs/tools.md)."),
    ] = None,
) -> None:
    """Without a subcommand: the MCP stdio bridge that MCP clients launch."""
    if ctx.invoked_subcommand is not None:
        flag = "--server" if server is not None else "--profile" if profile is not None else None
        if flag is not None:
            raise failed(
                f"{flag} is for the bridge (`bicameral mcp {flag} NAME`), "
                f"not for `mcp {ctx.invoked_subcommand}`",
                code=2,
            )
        return
    if server is not None and not server:
        raise failed("--server needs a server name", code=2)
    try:
        from bicameral.mcp import run_bridge
    except ImportError:
        raise failed("the MCP bridge is not available in this installation") from None
    raise typer.Exit(run_bridge(root_home(ctx), server, profile))


# --- configuration commands --------------------------------------------------------------


@mcp_app.command("add", cls=_AddCommand)
def add(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Server name: letters, digits, '-' and '_'.")
    ],
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND [ARGS...]",
            help="The server's command line, after `--`.",
            show_default=False,
        ),
    ] = None,
    *,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="K=V", help="An environment variable (repeatable)."),
    ] = None,
    cwd: Annotated[
        Path | None, typer.Option("--cwd", help="Working directory of the server.")
    ] = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Configure it, but do not start it.")
    ] = False,
    share: Annotated[
        str,
        typer.Option(
            "--share",
            metavar="auto|shared|per-client",
            help="How clients share its processes (docs/mcp.md, Sharing).",
        ),
    ] = "auto",
    url: Annotated[
        str | None,
        typer.Option("--url", help="A remote server's endpoint (instead of a command)."),
    ] = None,
    transport: Annotated[
        str,
        typer.Option("--transport", metavar="http|sse", help="A remote server's transport."),
    ] = "http",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", metavar="K=V", help="A header for a remote server (repeatable)."),
    ] = None,
    bearer: Annotated[
        str | None,
        typer.Option(
            "--bearer",
            metavar="TOKEN",
            help="A remote server's bearer token; \"${env:NAME}\" reads it from the daemon's env.",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a server of the same name.")
    ] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    reload: ReloadOpt = False,
) -> None:
    """Add an MCP server: bicameral mcp add NAME [--env K=V ...] -- COMMAND [ARGS...]."""
    from bicameral.mcp import SHARE_MODES, ServerConfig, check_server_name

    after = ctx.meta.get(_COMMAND_KEY)
    if after is not None and command:
        raise failed(
            f"unexpected argument(s) before `--`: {' '.join(command)}; usage: {_ADD_USAGE}", code=2
        )
    argv = list(after if after is not None else command or [])
    if url is not None and argv:
        raise failed("give a command (after `--`) or --url, not both", code=2)
    if url is None and (not argv or not argv[0].strip()):
        raise failed(f"missing the server's command; usage: {_ADD_USAGE}", code=2)
    problem = check_server_name(name)
    if problem is not None:
        raise failed(problem, code=2)
    if share not in SHARE_MODES:
        raise failed(f"--share must be one of {', '.join(SHARE_MODES)}, not {share!r}", code=2)
    if url is None and (header or bearer is not None or transport != "http"):
        raise failed("--transport, --header and --bearer are for a remote server (--url)", code=2)
    if url is not None:
        if env or cwd is not None:
            raise failed("--env and --cwd are for a local server (a command)", code=2)
        remote = ServerConfig(
            name=name,
            url=url,
            transport=transport,
            headers=tuple(sorted(_parse_env(header or [], what="--header"))),
            auth="bearer" if bearer is not None else "none",
            token=bearer,
            enabled=not disabled,
            share=share,
        )
        _add(ctx, remote, replace=replace, config=config, json=json, reload=reload)
        return
    env_pairs = _parse_env(env or [])
    cwd_text: str | None = None
    if cwd is not None:
        cwd_text = os.path.abspath(os.path.expanduser(cwd))
        if not os.path.isdir(cwd_text):
            raise failed(f"--cwd {cwd}: no such directory", code=2)
    server = ServerConfig(
        name=name,
        command=argv[0],
        args=tuple(argv[1:]),
        env=env_pairs,
        cwd=cwd_text,
        enabled=not disabled,
        share=share,
    )
    _add(ctx, server, replace=replace, config=config, json=json, reload=reload)


def _add(
    ctx: typer.Context,
    server: ServerConfig,
    *,
    replace: bool,
    config: Path | None,
    json: bool,
    reload: bool,
) -> None:
    from bicameral.mcp import add_server

    name = server.name
    path = _config_path(ctx, config)
    replaced = add_server(path, server, replace=replace)
    import shutil

    if not server.remote and os.sep not in server.command and shutil.which(server.command) is None:
        sys.stderr.write(
            f"bicameral: note: {server.command!r} is not on this shell's PATH; "
            "the daemon looks it up on its own PATH when it starts the server\n"
        )
    status = "replaced" if replaced else "added"
    result = {
        "status": status,
        "name": name,
        "config_path": str(path),
        "server": _server_dict(server),
    }
    _fast.emit(result, _fast.wants_json(json), f"{status} MCP server {name!r} in {path}")
    _reload_hint(ctx, reload)


@mcp_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The server to remove.")],
    config: ConfigOpt = None,
    json: JsonOpt = False,
    reload: ReloadOpt = False,
) -> None:
    """Remove an MCP server from config.toml."""
    from bicameral.mcp import remove_server

    path = _config_path(ctx, config)
    remove_server(path, name)
    result = {"status": "removed", "name": name, "config_path": str(path)}
    _fast.emit(result, _fast.wants_json(json), f"removed MCP server {name!r} from {path}")
    _reload_hint(ctx, reload)


@mcp_app.command("list")
def list_(
    ctx: typer.Context,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """List the configured MCP servers (a table on a terminal, JSON otherwise)."""
    import shlex

    from bicameral.mcp import list_servers

    path = _config_path(ctx, config)
    servers = list_servers(path, must_exist=config is not None)
    result = {"config_path": str(path), "servers": [_server_dict(s) for s in servers]}
    if not servers:
        human = f"no MCP servers in {path}; add one with `{_ADD_USAGE}`"
    else:
        rows = [["NAME", "ENABLED", "ENV", "COMMAND"]]
        for s in servers:
            where = f"  (in {s.cwd})" if s.cwd else ""
            rows.append(
                [
                    s.name,
                    "yes" if s.enabled else "no",
                    ",".join(k for k, _ in s.env) or "-",
                    (f"{s.url} ({s.transport})" if s.remote else shlex.join(s.argv())) + where,
                ]
            )
        human = table(rows)
    _fast.emit(result, _fast.wants_json(json), human)


@mcp_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="A client's MCP config: claude_desktop_config.json, .mcp.json, "
            "~/.claude.json, .cursor/mcp.json."
        ),
    ],
    *,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite servers that already exist.")
    ] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    reload: ReloadOpt = False,
) -> None:
    """Import the MCP servers of a Claude Desktop, Claude Code or Cursor config.

    Local (command) and remote servers alike: an entry with "type": "http" or
    "sse" and a "url" (and its "headers") becomes a remote server.
    """
    from bicameral.mcp import import_servers

    path = _config_path(ctx, config)
    outcome = import_servers(path, file.expanduser(), replace=replace)
    changed = [*outcome.added, *outcome.replaced]
    lines = []
    if changed:
        parts = []
        if outcome.added:
            parts.append(f"added {', '.join(outcome.added)}")
        if outcome.replaced:
            parts.append(f"replaced {', '.join(outcome.replaced)}")
        lines.append(
            f"imported {len(changed)} server(s) from {file} into {path}: {'; '.join(parts)}"
        )
    else:
        lines.append(f"nothing imported from {file}")
    lines.extend(f"  renamed {old!r} to {new!r}" for old, new in outcome.renamed.items())
    lines.extend(f"  skipped {name!r}: {reason}" for name, reason in outcome.skipped)
    lines.extend(f"  note {name!r}: {note}" for name, note in outcome.notes)
    result = {"status": "imported" if changed else "unchanged", "config_path": str(path)}
    result.update(outcome.to_dict())
    _fast.emit(result, _fast.wants_json(json), "\n".join(lines))
    if changed:
        _reload_hint(ctx, reload)


# --- the running daemon's servers --------------------------------------------------------


def _paths(ctx: typer.Context, config: Path | None = None) -> Any:
    from bicameral.daemon import resolve_paths

    with failing(None, code=2):
        return resolve_paths(root_home(ctx), config=config)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}M"


@mcp_app.command("ps")
def ps(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", help="One server only.", autocompletion=complete_server),
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show every configured server's live state: a table on a terminal, JSON otherwise."""
    from bicameral.mcp import ps_footer, server_rows

    paths = _paths(ctx, config)
    with failing(json):
        result = server_rows(paths, name, warn=_warn)
    rows = [["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "TOOLS", "SCHEMA", "CLIENTS", "MEM"]]
    rows[0].append("LAST ERROR")
    for r in result["servers"]:
        error = r["last_error"] if r["state"] not in ("ready",) or r["restarts"] else None
        state = r["state"]
        if isinstance(r.get("retry_at"), int | float):
            # Down, and the daemon tries it again by itself: say when.
            when = _fast._duration(max(0.0, r["retry_at"] - time.time()))
            state += f", retrying in {when}" if state == "down" else f", retry in {when}"
        rows.append(
            [
                r["name"],
                state,
                str(r["pid"] or "-") if not r.get("url") else "remote",
                _fast._duration(r["uptime_s"]) if r["uptime_s"] is not None else "-",
                str(r["restarts"]),
                offered_cell(r),
                schema_cell(r),
                "-" if r["clients"] is None else str(r["clients"]),
                _mib(r["memory_bytes"]),
                error or "-",
            ]
        )
        for inst in r.get("instances", [])[1:]:
            # A keyed instance (or a warm spare): who it serves, and what
            # its server was told of them.
            what = ", ".join(inst["clients"]) or ("warm spare" if inst["spare"] else "idle")
            caps = "+".join(inst["capabilities"]) or "no capabilities"
            roots = inst["roots"]
            if roots:
                caps += f"; roots {', '.join(str(u) for u in roots)}"
            rows.append(
                [
                    f"  {inst['name']}",
                    inst["state"],
                    str(inst["pid"] or "-"),
                    *[""] * 4,  # uptime, restarts, tools, schema: the server's row says
                    str(len(inst["clients"])),
                    "",
                    f"{what} ({caps})",
                ]
            )
    if not result["servers"]:
        human = f"no MCP servers in {result['config_path']}; add one with `{_ADD_USAGE}`"
    else:
        human = table(rows, wrap_last=True) + ps_footer(result)
    _fast.emit(result, _fast.wants_json(json), human)


def _control(ctx: typer.Context, action: str, name: str, json: bool) -> None:
    from bicameral.mcp import control_server

    paths = _paths(ctx)
    with failing(json, name=name):
        entry = control_server(paths, action, name, warn=_warn)
    done = {"restart": "restarted", "start": "started", "stop": "stopped"}[action]
    own = entry.get("started_value") if isinstance(entry.get("started_value"), dict) else {}
    state = (own or {}).get("state") or entry.get("state")
    result = {"status": done, "name": name, "state": state, "entry": entry}
    _fast.emit(result, _fast.wants_json(json), f"{done} MCP server {name!r} (now {state})")


@mcp_app.command("login")
def login(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The OAuth server to log in to.")],
    no_browser: Annotated[
        bool,
        typer.Option(
            "--no-browser",
            help="Open no browser: only print the authorization URL (on a line of its own, "
            "on stderr) and wait for the redirect to come back.",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Log in to a remote server that uses OAuth (browser; the URL is printed too)."""
    from bicameral.daemon import ConfigError
    from bicameral.mcp import login_server

    paths = _paths(ctx)
    try:
        result = login_server(paths, name, browser=not no_browser)
    except (ConfigError, ValueError, TimeoutError) as exc:
        why = str(exc) or "nobody completed the login in time"
        raise failed(f"login to {name!r} failed: {why}", json=json, why=why, name=name) from None
    except Exception as exc:  # the SDK's OAuth errors: one line, no traceback
        why = f"{type(exc).__name__}: {exc}"
        raise failed(f"login to {name!r} failed: {why}", json=json, why=why, name=name) from None
    _fast.emit(
        result,
        _fast.wants_json(json),
        f"logged in to {name!r}; tokens in {result['tokens']} (daemon: {result['daemon']})",
    )


@mcp_app.command("http")
def http(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="NAME",
            help="One server's endpoint (/mcp/NAME).",
            autocompletion=complete_server,
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Print the URL and header an MCP client needs for the daemon's HTTP listener."""
    from bicameral.mcp import http_endpoint

    with failing(json):
        result = http_endpoint(_paths(ctx), server)
    lines = [f"URL:    {result['url']}"]
    if "header" in result:
        lines.append(f"Header: {result['header']}")
    lines.append(f"Claude Code: {result['claude']}")
    _fast.emit(result, _fast.wants_json(json), "\n".join(lines))


@mcp_app.command("logout")
def logout(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The OAuth server to log out of.")],
    json: JsonOpt = False,
) -> None:
    """Forget a remote server's OAuth tokens (it shows needs-login until the next login)."""
    from bicameral.mcp import logout_server

    with failing(json, name=name):
        result = logout_server(_paths(ctx), name)
    what = "logged out of" if result["status"] == "logged-out" else "no tokens stored for"
    _fast.emit(result, _fast.wants_json(json), f"{what} {name!r} (daemon: {result['daemon']})")


@mcp_app.command("restart")
def restart(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="The server to restart.", autocompletion=complete_server
        ),
    ],
    json: JsonOpt = False,
) -> None:
    """Restart one server of the running daemon now (also revives one that failed)."""
    _control(ctx, "restart", name, json)


@mcp_app.command("start")
def start(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The server to start.", autocompletion=complete_server),
    ],
    json: JsonOpt = False,
) -> None:
    """Start a stopped (or failed) server of the running daemon."""
    _control(ctx, "start", name, json)


@mcp_app.command("stop")
def stop(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The server to stop.", autocompletion=complete_server),
    ],
    json: JsonOpt = False,
) -> None:
    """Stop one server and keep it stopped (until start, restart or a reload changing it)."""
    _control(ctx, "stop", name, json)
