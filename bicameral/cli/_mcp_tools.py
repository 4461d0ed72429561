"""``bicameral mcp tools [--profile NAME | --server NAME] [--json]``: what a view offers.

Prints the tools a client of that view receives from the running daemon's
``tools/list``, each with its size (bytes of JSON, and tokens as an
estimate: bytes / 4), and the total; for an aggregated view in search mode
also the size of the whole catalog it stands in for. JSON when asked for or
when stdout is not a terminal, a table otherwise; errors are one line.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bicameral.cli import _fast
from bicameral.cli._context import root_home
from bicameral.cli._errors import failed, failing

__all__ = ["offered_cell", "schema_cell", "tools"]


def offered_cell(row: dict[str, Any]) -> str:
    """Tools offered (of those listed, where its rules hide some)."""
    listed, offered = row["tools"], row.get("offered_tools")
    if listed is None:
        return "-"
    return f"{offered}/{listed}" if offered is not None and offered != listed else str(listed)


def schema_cell(row: dict[str, Any]) -> str:
    """What the offered tools' schemas cost: bytes, and tokens (an estimate: bytes / 4)."""
    size, tokens = row.get("schema_bytes"), row.get("schema_tokens")
    if size is None or tokens is None:
        return "-"
    return f"{size / 1000:.1f}kB ~{tokens / 1000:.1f}k tok" if size >= 1000 else f"{size}B"


def _size(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def _human(result: dict[str, Any]) -> str:
    lines = []
    rows = [["NAME", "BYTES", "~TOKENS"]]
    rows += [[str(t["name"]), str(t["bytes"]), str(t["tokens"])] for t in result["tools"]]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for name, size, tokens in rows:
        lines.append(f"{name.ljust(widths[0])}  {size.rjust(widths[1])}  {tokens.rjust(widths[2])}")
    total, catalog = result["total"], result["catalog"]
    mode = " (search mode)" if result.get("search") else ""
    lines.append(
        f"{result['view']}{mode}: {total['tools']} tools, {_size(total['bytes'])} bytes, "
        f"~{_size(total['tokens'])} tokens (estimate: bytes/4)"
    )
    if result.get("search"):
        share = 100 * total["bytes"] / catalog["bytes"] if catalog["bytes"] else 0.0
        lines.append(
            f"  instead of the catalog's {catalog['tools']} tools, "
            f"{_size(catalog['bytes'])} bytes, ~{_size(catalog['tokens'])} tokens "
            f"({share:.1f}% of it)"
        )
    if not result.get("listed", True):
        lines.append("  (some servers have not listed their tools yet: see `bicameral mcp ps`)")
    lines.extend(f"  warning: {problem}" for problem in result.get("problems") or [])
    return "\n".join(lines)


def tools(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option("--profile", metavar="NAME", help="A profile's view (/mcp/p/NAME)."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", metavar="NAME", help="One server's view (/mcp/NAME)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON even on a terminal.")] = False,
) -> None:
    """Show the tools a client of a view receives, their size, and the total."""
    from bicameral.daemon import resolve_paths
    from bicameral.mcp import view_tools

    if profile is not None and server is not None:
        raise failed("give --profile or --server, not both", code=2)
    with failing(json):
        result = view_tools(resolve_paths(root_home(ctx)), server=server, profile=profile)
    _fast.emit(result, _fast.wants_json(json), _human(result))
