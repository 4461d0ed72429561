"""``bicameral dashboard``: open the daemon's dashboard, signed in by a one-time link."""

from __future__ import annotations

from typing import Annotated

import typer

from bicameral.cli import _fast
from bicameral.cli._context import root_home

__all__ = ["dashboard"]


def dashboard(
    ctx: typer.Context,
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Print the link; do not open a browser.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON even on a terminal.")] = False,
) -> None:
    """Open the dashboard in a browser, signed in (the link works once, for two minutes)."""
    from bicameral.daemon import resolve_paths
    from bicameral.mcp.dashboard import dashboard_link

    result = dashboard_link(resolve_paths(root_home(ctx)))
    opened = False
    if not no_open:
        import webbrowser

        try:
            opened = webbrowser.open(result["url"])
        except Exception:  # no browser here: the printed link is the way in
            opened = False
    result["opened"] = opened
    human = f"{'opened' if opened else 'open this link (once)'}: {result['url']}"
    _fast.emit(result, _fast.wants_json(json), human)
