"""What a client of a view receives, and what it costs: ``bicameral mcp tools``.

`view_report` lists the tools a client of one view gets from ``tools/list``
(every page), each with its size as compact JSON in bytes and an estimate in
tokens (bytes / 4, `token_estimate`), with the total; for an aggregated view
also the size of its whole catalog, which is what a client gets without
search mode, so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bicameral.mcp.surface._offer import schema_size, token_estimate
from bicameral.mcp.surface._surface import OWN_TOOLS, Source, Surface, view_size

__all__ = ["view_report"]


def _rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        size = schema_size(item)
        rows.append({"name": item.get("name"), "bytes": size, "tokens": token_estimate(size)})
    return rows


def view_report(
    surface: Surface,
    sources: Sequence[Source],
    *,
    server: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """The tools a client of the view receives, with their sizes and the total.

    One server's view with `server`, else the aggregated view of `profile`
    (``None``: ``default``). Raises `Refused` for an unknown profile or
    server (the message names those that exist).
    """
    from bicameral.mcp.surface._surface import Refused

    if server is not None:
        source = next((s for s in sources if s.server == server), None)
        if source is None:
            known = ", ".join(s.server for s in sources) or "none"
            raise Refused(f"no MCP server named {server!r} is running (running: {known})")
        items = [item for page in surface.server_pages(source, "tools") for item in page]
        return {
            "view": f"/mcp/{server}",
            "server": server,
            "profile": None,
            "search": False,
            "listed": source.listed,
            "tools": _rows(items),
            "total": view_size(items),
            "catalog": view_size(items),
            "problems": surface.offered(source, "tools").problems,
        }
    chosen = surface.profile(profile)
    catalog = surface.catalog(chosen, "tools", sources, OWN_TOOLS)
    items = [item for page in catalog.listed() for item in page]
    return {
        "view": "/mcp" if profile is None else f"/mcp/p/{chosen.name}",
        "server": None,
        "profile": chosen.name,
        "search": catalog.searching,
        "listed": all(s.listed for s in sources if chosen.shows(s.server)),
        "tools": _rows(items),
        "total": view_size(items),
        "catalog": view_size(catalog.items),
        "problems": catalog.problems,
    }
