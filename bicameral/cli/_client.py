"""``bicameral client list | setup | undo``: put MCP clients on bicameral (docs/clients.md).

Parsing and printing only; the work is :mod:`bicameral.mcp.clients`.
Output follows the other commands: JSON when stdout is not a terminal or
``--json`` is given, a table or a few lines otherwise; every refusal is one
line on stderr and exit 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bicameral.cli import _fast
from bicameral.cli._context import root_home
from bicameral.cli._errors import failing
from bicameral.cli._usage import OneLineGroup

__all__ = ["client_app"]

client_app = typer.Typer(
    name="client",
    cls=OneLineGroup,
    help="Find the MCP clients on this machine and put them on bicameral (or take them back).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON even on a terminal.")]
NameArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="A client: claude-desktop, claude-code, cursor, vscode, codex..."
    ),
]


def _paths(ctx: typer.Context) -> Any:
    from bicameral.daemon import resolve_paths

    with failing(None, code=2):
        return resolve_paths(root_home(ctx))


@client_app.command("list")
def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show the MCP clients found here, their config and which servers go through bicameral."""
    from bicameral.mcp.clients import list_clients

    result = list_clients(_paths(ctx))
    rows = [["CLIENT", "CONFIG", "SERVERS"]]
    missing = []
    for c in result["clients"]:
        if not c["found"]:
            missing.append(c["name"])
            continue
        if c["error"]:
            servers = f"unreadable: {c['error']}"
        else:
            servers = (
                ", ".join(
                    s["name"] + ("" if s["through"] is None else " (bicameral)")
                    for s in c["servers"]
                )
                or "-"
            )
        rows.append([c["name"], c["path"], servers])
    human = _table(rows) if len(rows) > 1 else "no MCP client config found on this machine"
    if missing:
        human += f"\nnot found: {', '.join(missing)}"
    _fast.emit(result, _fast.wants_json(json), human)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    )


@client_app.command("setup")
def setup(
    ctx: typer.Context,
    name: NameArg,
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff; change nothing.")
    ] = False,
    http: Annotated[
        bool,
        typer.Option("--http", help="Point the client at the daemon's HTTP listener instead."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Rewrite the file even if it changed since the last setup."),
    ] = False,
    on_clash: Annotated[
        str,
        typer.Option(
            "--on-clash",
            metavar="fail|keep|replace|rename",
            help="When bicameral has a different server of the same name.",
        ),
    ] = "fail",
    reload: Annotated[
        bool,
        typer.Option("--reload/--no-reload", help="Reload a running daemon with the new servers."),
    ] = True,
    json: JsonOpt = False,
) -> None:
    """Import a client's servers and rewrite its config to run them through bicameral."""
    from bicameral.mcp.clients import setup_client

    paths = _paths(ctx)
    with failing(json, client=name):
        result = setup_client(
            paths, name, dry_run=dry_run, http=http, force=force, on_clash=on_clash
        )
    imported = result["import"]
    lines = []
    if dry_run:
        lines.append(result["diff"].rstrip("\n") or f"{result['path']}: nothing to change")
    elif result["status"] == "unchanged":
        lines.append(f"{result['label']} already goes through bicameral ({result['path']})")
    else:
        routes = ", ".join(
            n if n == s else f"{n} -> {s}" for n, s in sorted(result["rewritten"].items())
        )
        lines.append(f"{result['label']}: {routes or 'no entry'} now go(es) through bicameral")
        if result["backup"]:
            lines.append(f"  backup: {result['backup']} (undo: bicameral client undo {name})")
    if imported["added"] or imported["replaced"]:
        what = ", ".join([*imported["added"], *imported["replaced"]])
        verb = "would import" if dry_run else "imported"
        lines.append(f"  {verb} into {result['config_path']}: {what}")
    lines.extend(f"  left as it is: {s['name']}: {s['reason']}" for s in imported["skipped"])
    lines.extend(f"  note {n['name']}: {n['note']}" for n in imported["notes"])
    _fast.emit(result, _fast.wants_json(json), "\n".join(lines))
    if not dry_run and (imported["added"] or imported["replaced"]):
        from bicameral.cli._mcp import _reload_hint

        _reload_hint(ctx, reload)


@client_app.command("undo")
def undo(
    ctx: typer.Context,
    name: NameArg,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore the backup even if the file changed since setup."),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Restore a client's config as it was before its last setup, byte for byte."""
    from bicameral.mcp.clients import undo_client

    paths = _paths(ctx)
    with failing(json, client=name):
        result = undo_client(paths, name, force=force)
    human = f"restored {result['path']}"
    if result["servers"]:
        human += (
            f"; its servers stay in {result['config_path']} "
            f"({', '.join(result['servers'])}): `bicameral mcp remove NAME` removes one"
        )
    _fast.emit(result, _fast.wants_json(json), human)
