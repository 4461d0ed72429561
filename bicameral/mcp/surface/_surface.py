"""The tool surface of every view: what a client is offered, and where its calls go.

`Surface` holds one configuration (`SurfaceConfig`: each server's `Rules`,
the profiles) and answers, for the session host, the questions every view
asks:

* a one-server view (``--server NAME``, ``/mcp/NAME``): its pages of a list
  (`server_pages`) and the server's own name for a name a client used
  (`server_name`);
* an aggregated view (``bicameral mcp``, ``/mcp``, a profile): its
  `Catalog` of one kind, which gives the pages a client lists (in search
  mode: the search and call tools and the pinned ones), the route of every
  name it shows, and the search index; and `route` for a name a client used.

A name that a rule hides raises `Refused`, naming the rule; the host turns
that into the client's MCP error, and the server never hears of the call.

Everything is computed from the lists the host passes in (`Source`: one
server's lists as one client sees them) and cached by the identity of
those lists: the daemon replaces a list whenever its server's list changes,
so a cached answer is never stale, and a list that did not change costs a
dictionary lookup. A reload makes a new `Surface` (new rules, empty caches).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bicameral.mcp.surface._names import SEPARATOR, split_name, unique_name
from bicameral.mcp.surface._offer import URI_PREFIX, Offered, offer, schema_size, token_estimate
from bicameral.mcp.surface._rules import DEFAULT_PROFILE, Profile, ServerRules
from bicameral.mcp.surface._search import SearchIndex

__all__ = [
    "CALL_TOOL",
    "OWN_PREFIX",
    "OWN_TOOLS",
    "SEARCH_TOOL",
    "Catalog",
    "Refused",
    "Source",
    "Surface",
    "SurfaceConfig",
]

logger = logging.getLogger("bicameral.mcp.surface")

#: The daemon's own tools are named ``bicameral__<name>``.
OWN_PREFIX = "bicameral"
SEARCH_TOOL = f"{OWN_PREFIX}{SEPARATOR}search_tools"
CALL_TOOL = f"{OWN_PREFIX}{SEPARATOR}call_tool"
#: The daemon's own tools in every aggregated view (the session host runs them).
OWN_TOOLS: list[dict[str, Any]] = [
    {
        "name": f"{OWN_PREFIX}{SEPARATOR}status",
        "description": "bicameral: the state of every MCP server and the daemon's supervisor tree.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": f"{OWN_PREFIX}{SEPARATOR}restart",
        "description": "bicameral: restart one MCP server (its adapter) now.",
        "inputSchema": {
            "type": "object",
            "properties": {"server": {"type": "string", "description": "the server's name"}},
            "required": ["server"],
        },
    },
]
#: Matches `bicameral__search_tools` returns by default, and at most.
SEARCH_LIMIT = 5
MAX_SEARCH_LIMIT = 50
#: Cached answers kept per kind of cache (views, servers' lists, indexes).
_CACHE = 64


class Refused(Exception):
    """A client named something its view does not offer; the message says why (the rule)."""


@dataclass(frozen=True)
class Source:
    """One server's lists as one client sees them (its instance's, else the primary's).

    ``lists`` and ``pages``: by kind, as `bicameral.mcp._state.Instance`
    holds them; ``listed``: whether the server has listed them at all yet
    (before its first start every list is empty, which proves nothing).
    """

    server: str
    lists: Mapping[str, list[dict[str, Any]]]
    pages: Mapping[str, list[int]]
    listed: bool = True


@dataclass
class SurfaceConfig:
    """``[mcp.servers.NAME.tools|prompts|resources]`` and ``[mcp.profiles.NAME]``, validated."""

    #: The configuration file, for messages.
    file: str = "config.toml"
    rules: dict[str, ServerRules] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)

    def profile(self, name: str | None) -> Profile | None:
        """The profile `name` (``None``, or ``default`` when not configured: every server)."""
        if name is None or name == DEFAULT_PROFILE.name:
            return self.profiles.get(DEFAULT_PROFILE.name, DEFAULT_PROFILE)
        return self.profiles.get(name)

    def profile_names(self) -> list[str]:
        """Every profile a client may pick (``default`` always among them)."""
        return [DEFAULT_PROFILE.name, *(n for n in self.profiles if n != DEFAULT_PROFILE.name)]


def _tool_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def search_tool_def(count: int) -> dict[str, Any]:
    """``bicameral__search_tools``: what search mode offers instead of the catalog."""
    return {
        "name": SEARCH_TOOL,
        "description": (
            f"Find tools among the {count} this connection offers: describe the task in a few "
            "words (for example 'list files in a folder'); returns the best matches with their "
            f"full input schemas. Call one with {CALL_TOOL}, or by its name."
        ),
        "inputSchema": _tool_schema(
            {
                "query": {"type": "string", "description": "what you want to do, in words"},
                "limit": {
                    "type": "integer",
                    "description": f"how many matches (default {SEARCH_LIMIT})",
                    "minimum": 1,
                    "maximum": MAX_SEARCH_LIMIT,
                },
            },
            ["query"],
        ),
    }


CALL_TOOL_DEF: dict[str, Any] = {
    "name": CALL_TOOL,
    "description": (
        f"Call a tool that {SEARCH_TOOL} found, by its name, with its arguments; "
        "returns exactly what the tool returns."
    ),
    "inputSchema": _tool_schema(
        {
            "name": {"type": "string", "description": "the tool's name, as search returned it"},
            "arguments": {"type": "object", "description": "the tool's arguments"},
        },
        ["name"],
    ),
}


@dataclass
class Catalog:
    """One kind of list of one aggregated view: what it offers and where each name goes."""

    kind: str
    profile: Profile
    #: The whole catalog, in pages (the daemon's own tools, then each server's).
    pages: list[list[dict[str, Any]]]
    #: Each name it shows -> (server, the server's own name); ``None`` for the daemon's own.
    routes: dict[str, tuple[str, str] | None]
    #: Tools only: whether the view offers search instead of the catalog.
    searching: bool = False
    #: The pinned tools (search mode offers them directly).
    pinned: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _index: SearchIndex | None = None

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for page in self.pages for item in page]

    def listed(self) -> list[list[dict[str, Any]]]:
        """The pages a client's list request gets."""
        if not self.searching:
            return self.pages
        return [[search_tool_def(len(self.routes)), CALL_TOOL_DEF, *self.pinned]]

    def search(self, query: str, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
        """The catalog's tools that best match `query` (FTS5, BM25), best first."""
        if self._index is None:
            self._index = SearchIndex(self.items)
        return self._index.search(query, limit)

    def search_result(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``bicameral__search_tools``'s result for `arguments` (``query``, ``limit``).

        The matches are the tools themselves, full schemas included, as
        ``structuredContent.tools`` and as JSON text; bad arguments are a
        tool error (the model can read it and try again).
        """
        query, limit = arguments.get("query"), arguments.get("limit", SEARCH_LIMIT)
        if not isinstance(query, str) or not query.strip():
            return _tool_error("query: describe the task in a few words, e.g. 'read a file'")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return _tool_error(f"limit: a whole number from 1 to {MAX_SEARCH_LIMIT}")
        found = self.search(query, min(limit, MAX_SEARCH_LIMIT))
        text = orjson.dumps({"tools": found}).decode()
        if not found:
            text = f"no tool matches {query!r}; try other words (the tools: {len(self.routes)})"
        return {"content": [{"type": "text", "text": text}], "structuredContent": {"tools": found}}


class Surface:
    """The tool surface of one configuration (see the module's docstring)."""

    def __init__(self, config: SurfaceConfig | None = None, *, warn: bool = True) -> None:
        self.config = config or SurfaceConfig()
        #: Log each problem found in the lists once (off: a reload's check, `mcp tools`).
        self.warn = warn
        self._offered: dict[tuple[Any, ...], tuple[Any, Offered]] = {}
        self._catalogs: dict[tuple[Any, ...], tuple[Any, Catalog]] = {}
        self._warned: set[str] = set()

    # -- one server's lists --------------------------------------------------------

    def rules(self, server: str) -> ServerRules:
        return self.config.rules.get(server) or _NO_RULES

    def offered(self, source: Source, kind: str) -> Offered:
        """`source`'s list of `kind` as views offer it (cached by the list's identity)."""
        items = _list(source, kind)
        sizes = tuple(source.pages.get(kind) or ())
        twin = {"resources": "resource_templates", "resource_templates": "resources"}.get(kind)
        others = _list(source, twin) if twin is not None else _EMPTY
        key = (source.server, kind, id(items), sizes, id(others))
        hit = self._offered.get(key)
        if hit is not None and hit[0][0] is items and hit[0][1] is others:
            return hit[1]
        rules = self.rules(source.server).of(kind)
        field_ = "uriTemplate" if twin == "resource_templates" else "uri"
        other_names = [str(o.get(field_)) for o in others if isinstance(o, dict)]
        result = offer(source.server, kind, items, rules, sizes=sizes, others=other_names)
        if source.listed:
            self._warn(result.problems)
        _remember(self._offered, key, ((items, others), result))
        return result

    def server_pages(self, source: Source, kind: str) -> list[list[dict[str, Any]]]:
        """A one-server view's pages of `kind`."""
        if kind not in ("tools", "prompts") and self.rules(source.server).of(kind).empty:
            return _pages(_list(source, kind), source.pages.get(kind) or [])
        return self.offered(source, kind).pages

    def server_name(self, source: Source, kind: str, name: str) -> str:
        """The server's own name for `name` in a one-server view; `Refused` if hidden."""
        offered = self.offered(source, kind)
        own = offered.local.get(name)
        if own is not None:
            return own
        self._why_not(source.server, kind, name, offered)
        return name

    def server_params(self, source: Source, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A one-server view's request in its server's names; `Refused` if a rule hides it.

        Tool and prompt names (a call, a prompt, a completion's prompt) go
        back to the server's own; resource URIs are checked against its rules.
        """
        if method in ("tools/call", "prompts/get"):
            name = params.get("name")
            if isinstance(name, str):
                kind = "tools" if method == "tools/call" else "prompts"
                own = self.server_name(source, kind, name)
                return params if own == name else {**params, "name": own}
        elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            if isinstance(params.get("uri"), str):
                self.server_uri(source.server, params["uri"])
        elif method == "completion/complete":
            ref = params.get("ref") or {}
            if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
                own = self.server_name(source, "prompts", ref["name"])
                return {**params, "ref": {**ref, "name": own}}
            if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                self.server_uri(source.server, ref["uri"])
        return params

    def server_uri(self, server: str, uri: str) -> None:
        """Refuse a resource URI that `server`'s rules hide."""
        why = self.rules(server).resources.hides(uri)
        if why is not None:
            raise Refused(f"resource {uri!r} is hidden by {why}")

    def _why_not(
        self, server: str, kind: str, own: str, offered: Offered, prefix: str = ""
    ) -> None:
        noun = "tool" if kind == "tools" else "prompt"
        why = self.rules(server).of(kind).hides(own)
        if why is not None:
            raise Refused(f"{noun} {prefix + own!r} is hidden by {why}")
        shown = offered.renamed.get(own)
        if shown is not None:
            table = self.rules(server).of(kind).table
            raise Refused(
                f"{noun} {prefix + own!r} is offered as {prefix + shown!r} ({table} rename)"
            )

    # -- aggregated views ----------------------------------------------------------

    def profile(self, name: str | None) -> Profile:
        """The profile `name`; `Refused` (naming those that exist) when there is none."""
        profile = self.config.profile(name)
        if profile is None:
            names = ", ".join(self.config.profile_names())
            raise Refused(f"no profile named {name!r} is configured (profiles: {names})")
        return profile

    def catalog(
        self,
        profile: Profile,
        kind: str,
        sources: Sequence[Source],
        own: Sequence[dict[str, Any]] = (),
    ) -> Catalog:
        """The aggregated view `profile` of `kind` over `sources` (cached by their lists)."""
        refs = tuple(_list(s, kind) for s in sources)
        key = (
            profile,
            kind,
            tuple(
                (s.server, s.listed, id(r), tuple(s.pages.get(kind) or ()))
                for s, r in zip(sources, refs, strict=True)
            ),
            id(own),
        )
        hit = self._catalogs.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], refs, strict=True)):
            return hit[1]
        catalog = self._build(profile, kind, sources, own)
        _remember(self._catalogs, key, (refs, catalog))
        return catalog

    def _build(
        self, profile: Profile, kind: str, sources: Sequence[Source], own: Sequence[dict[str, Any]]
    ) -> Catalog:
        named = kind in ("tools", "prompts")
        first: list[dict[str, Any]] = []
        more: list[list[dict[str, Any]]] = []
        routes: dict[str, tuple[str, str] | None] = {}
        problems: list[str] = []
        seen: set[str] = set()

        candidates: list[str] = []  # every name, before the profile's own globs

        def keep(item: dict[str, Any], route: tuple[str, str] | None) -> dict[str, Any] | None:
            name = item.get("name")
            if not named or not isinstance(name, str):
                return item
            candidates.append(name)
            if profile.hides(name) is not None:
                return None
            if name in seen:
                # Two servers' names that meet (a server named like the
                # daemon's own tools, or tails of underscores): the later
                # one, in configuration order, takes a name of its own.
                name = unique_name(f"{name}/{route[0] if route else ''}")
                item = {**item, "name": name}
            seen.add(name)
            routes[name] = route
            return item

        for item in own:
            kept = keep(item, None)
            if kept is not None:
                first.append(kept)
        for source in sources:
            if not profile.shows(source.server):
                continue
            offered = self.offered(source, kind)
            pages = []
            for page in offered.prefixed_pages:
                shown = []
                for item in page:
                    route = None
                    if named and isinstance(item.get("name"), str):
                        route = (source.server, offered.prefixed.get(item["name"], ""))
                    kept = keep(item, route)
                    if kept is not None:
                        shown.append(kept)
                pages.append(shown)
            if len(pages) == 1:
                first.extend(pages[0])
            else:
                more.extend(pages)
        catalog = Catalog(kind, profile, [first, *more], routes)
        if kind == "tools":
            catalog.searching = profile.searching(len(routes))
            by_name = {item["name"]: item for item in catalog.items}
            listed = {s.server for s in sources if s.listed}
            for name in profile.pinned:
                owner = split_name(name, [OWN_PREFIX, *(s.server for s in sources)])
                if name in by_name:
                    catalog.pinned.append(by_name[name])
                elif owner is not None and (owner[0] in listed or owner[0] == OWN_PREFIX):
                    problems.append(
                        f'{profile.table} pinned "{name}": no such tool in the view '
                        f"({_nearest(name, by_name)})"
                    )
        visible = [s for s in sources if profile.shows(s.server)]
        if named and visible and all(s.listed for s in visible):
            for key, globs in (("allow", profile.allow or ()), ("deny", profile.deny)):
                for glob in globs:
                    if kind == "tools" and not any(_fn(n, glob) for n in candidates):
                        problems.append(f'{profile.table} {key} "{glob}" matches no tool')
        catalog.problems = problems
        self._warn(problems)
        return catalog

    def route(
        self,
        profile: Profile,
        kind: str,
        name: str,
        sources: Sequence[Source],
        own: Sequence[dict[str, Any]] = (),
    ) -> tuple[str, str] | None:
        """Where an aggregated view's `name` goes: (server, its own name), ``None`` for ours.

        Raises `Refused` naming the rule when a rule hides it, or when it
        names no server of the view. A name the lists do not hold (yet) but
        no rule hides goes to its server under the rest of the name.
        """
        catalog = self.catalog(profile, kind, sources, own)
        noun = "tool" if kind == "tools" else "prompt"
        if name in catalog.routes:
            return catalog.routes[name]
        why = profile.hides(name)
        if why is not None:
            raise Refused(f"{noun} {name!r} is hidden by {why}")
        shown = [s.server for s in sources if profile.shows(s.server)]
        split = split_name(name, shown)
        if split is None:
            others = split_name(name, [s.server for s in sources])
            if others is not None:
                raise Refused(
                    f"{noun} {name!r}: server {others[0]!r} is not in {profile.table or 'the view'}"
                )
            raise Refused(f"unknown {noun} {name!r}")
        server, rest = split
        source = next(s for s in sources if s.server == server)
        self._why_not(server, kind, rest, self.offered(source, kind), server + SEPARATOR)
        return split

    def resource(self, profile: Profile, uri: str, servers: Sequence[str]) -> tuple[str, str]:
        """(server, its own URI) of an aggregated view's resource URI; `Refused` if hidden."""
        if uri.startswith(URI_PREFIX):
            server, sep, rest = uri[len(URI_PREFIX) :].partition("/")
            if sep and server in servers and profile.shows(server):
                self.server_uri(server, rest)
                return server, rest
        raise Refused(f"unknown resource {uri!r}")

    def check(self, source: Source) -> None:
        """Apply `source`'s rules to each of its lists, so what they get wrong is logged."""
        rules = self.rules(source.server)
        for kind in ("tools", "prompts", "resources", "resource_templates"):
            if not rules.of(kind).empty:
                self.offered(source, kind)

    # -- accounting ----------------------------------------------------------------

    def accounting(self, source: Source) -> dict[str, int]:
        """A server's offered tools and their schemas' size (bytes, and tokens: an estimate)."""
        offered = self.offered(source, "tools")
        size = offered.schema_bytes
        return {
            "offered_tools": len(offered.items),
            "schema_bytes": size,
            "schema_tokens": token_estimate(size),
        }

    # -- warnings --------------------------------------------------------------

    def _warn(self, problems: list[str]) -> None:
        if not self.warn:
            return
        for problem in problems:
            if problem not in self._warned and len(self._warned) < 1000:
                self._warned.add(problem)
                logger.warning("%s: %s", self.config.file, problem)


_NO_RULES = ServerRules()
#: A list a server does not have (one object, so caches keyed by identity hold).
_EMPTY: list[dict[str, Any]] = []


def _list(source: Source, kind: str) -> list[dict[str, Any]]:
    """`source`'s list of `kind`: the very object it holds (caches key by its identity)."""
    items = source.lists.get(kind)
    return items if items is not None else _EMPTY


def _tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _fn(name: str, glob: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, glob)


def _nearest(name: str, names: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return f"did you mean {close[0]!r}?" if close else "see `bicameral mcp tools`"


def _pages(items: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    if len(sizes) <= 1 or sum(sizes) != len(items):
        return [items]
    pages, start = [], 0
    for size in sizes:
        pages.append(items[start : start + size])
        start += size
    return pages


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if key not in cache and len(cache) >= _CACHE:
        del cache[next(iter(cache))]
    cache[key] = value


def view_size(items: Sequence[dict[str, Any]]) -> dict[str, int]:
    """``tools`` (how many), ``bytes`` and ``tokens`` (an estimate) of a list as sent."""
    size = sum(schema_size(item) for item in items)
    return {"tools": len(items), "bytes": size, "tokens": token_estimate(size)}
