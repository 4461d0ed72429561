"""The tool surface: what each view offers a client, and search over large catalogs.

Pure and free of the MCP SDK and of any I/O but an in-memory SQLite
database: the session host (`bicameral.mcp._host`) asks `Surface` what a
view lists and where a name goes; the config loader (`bicameral.mcp._config`)
validates ``[mcp.servers.NAME.tools]`` and ``[mcp.profiles.NAME]`` with
`load_surface`. docs/tools.md is the user's side of it.
"""

from __future__ import annotations

from bicameral.mcp.surface._config import PROFILE_KEYS, RULE_KEYS, check_lists, load_surface
from bicameral.mcp.surface._names import (
    MAX_NAME,
    SEPARATOR,
    aggregate_name,
    assign_names,
    check_name,
    split_name,
    valid_name,
)
from bicameral.mcp.surface._offer import URI_PREFIX, Offered, offer, schema_size, token_estimate
from bicameral.mcp.surface._report import view_report
from bicameral.mcp.surface._rules import (
    DEFAULT_PROFILE,
    KINDS,
    SEARCH_MODES,
    Profile,
    Rules,
    ServerRules,
)
from bicameral.mcp.surface._search import SearchIndex, match_query, name_words
from bicameral.mcp.surface._surface import (
    CALL_TOOL,
    OWN_PREFIX,
    OWN_TOOLS,
    SEARCH_TOOL,
    Catalog,
    Refused,
    Source,
    Surface,
    SurfaceConfig,
    view_size,
)

__all__ = [
    "CALL_TOOL",
    "DEFAULT_PROFILE",
    "KINDS",
    "MAX_NAME",
    "OWN_PREFIX",
    "OWN_TOOLS",
    "PROFILE_KEYS",
    "RULE_KEYS",
    "SEARCH_MODES",
    "SEARCH_TOOL",
    "SEPARATOR",
    "URI_PREFIX",
    "Catalog",
    "Offered",
    "Profile",
    "Refused",
    "Rules",
    "SearchIndex",
    "ServerRules",
    "Source",
    "Surface",
    "SurfaceConfig",
    "aggregate_name",
    "assign_names",
    "check_lists",
    "check_name",
    "load_surface",
    "match_query",
    "name_words",
    "offer",
    "schema_size",
    "split_name",
    "token_estimate",
    "valid_name",
    "view_report",
    "view_size",
]
