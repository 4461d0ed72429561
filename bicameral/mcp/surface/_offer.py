"""One server's list as clients are offered it: its rules applied, its names made valid.

`offer` is pure: the server's items (one list: tools, prompts, resources or
resource templates) and its `Rules` in, an `Offered` out, with the items as
a one-server view shows them (``--server NAME``, ``/mcp/NAME``) and as an
aggregated view does (``<server>__<name>``, ``bicameral://<server>/<uri>``),
the maps back to the server's own names, and what in the rules matched
nothing (a warning, or a reload's error, for the caller to raise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bicameral.mcp.surface._names import aggregate_name, assign_names
from bicameral.mcp.surface._rules import Rules, matches

__all__ = ["URI_PREFIX", "Offered", "key_of", "offer", "schema_size", "token_estimate"]

#: Resources in an aggregated view: ``bicameral://<server>/<the server's URI>``.
URI_PREFIX = "bicameral://"
#: What names an item of each kind in the server's own words.
_KEY = {
    "tools": "name",
    "prompts": "name",
    "resources": "uri",
    "resource_templates": "uriTemplate",
}
#: (Resources and their templates share their rules, and so their problems' words.)
_NOUN = {
    "tools": "tool",
    "prompts": "prompt",
    "resources": "resource",
    "resource_templates": "resource",
}


def key_of(kind: str) -> str:
    """The field that names an item of `kind` (``name``, ``uri``, ``uriTemplate``)."""
    return _KEY[kind]


def token_estimate(size: int) -> int:
    """Tokens a client's model spends on `size` bytes of JSON: an estimate, bytes / 4.

    Tokenizers differ; four bytes a token is the usual rule of thumb for
    English text and JSON, good for comparing views, not for billing.
    """
    return (size + 3) // 4


def schema_size(item: dict[str, Any]) -> int:
    """Bytes of `item` as compact JSON (what it costs on the wire, about)."""
    return len(orjson.dumps(item))


@dataclass
class Offered:
    """One server's list of one kind, as views offer it."""

    server: str
    kind: str
    #: The items as a one-server view shows them, cut into the server's pages.
    pages: list[list[dict[str, Any]]]
    #: The same items as an aggregated view shows them, cut the same way.
    prefixed_pages: list[list[dict[str, Any]]]
    #: A one-server view's name -> the server's own name (tools and prompts).
    local: dict[str, str] = field(default_factory=dict)
    #: An aggregated view's name -> the server's own name (tools and prompts).
    prefixed: dict[str, str] = field(default_factory=dict)
    #: The server's own name -> the name it is offered under, where it differs.
    renamed: dict[str, str] = field(default_factory=dict)
    #: What in the rules matched nothing, in words naming the table and key.
    problems: list[str] = field(default_factory=list)
    #: Items the server listed, before its rules.
    listed: int = 0

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for page in self.pages for item in page]

    @property
    def prefixed_items(self) -> list[dict[str, Any]]:
        return [item for page in self.prefixed_pages for item in page]

    @property
    def schema_bytes(self) -> int:
        """Bytes of the offered items as a one-server view's ``tools/list`` carries them."""
        return sum(schema_size(item) for page in self.pages for item in page)


def _cut(items: list[Any], sizes: Sequence[int]) -> list[list[Any]]:
    """`items` (each tagged with its page) grouped back into pages."""
    if len(sizes) <= 1:
        return [[item for _, item in items]]
    pages: list[list[Any]] = [[] for _ in sizes]
    for page, item in items:
        pages[page].append(item)
    return pages


def _page_numbers(count: int, sizes: Sequence[int]) -> list[int]:
    if len(sizes) <= 1 or sum(sizes) != count:
        return [0] * count
    numbers: list[int] = []
    for page, size in enumerate(sizes):
        numbers.extend([page] * size)
    return numbers


def offer(
    server: str,
    kind: str,
    items: list[dict[str, Any]],
    rules: Rules,
    *,
    sizes: Sequence[int] = (),
    others: Sequence[str] = (),
) -> Offered:
    """`items` of `server` with `rules` applied; `sizes`: the server's page sizes.

    Hidden items are left out of every page. A rename onto a name the
    server already offers is not applied (both stay reachable) and is one
    of the `Offered.problems`; so is every glob, rename and description
    that names nothing the server listed (nor any of `others`: the names of
    a list that shares these rules, resource templates beside resources).
    """
    key = _KEY[kind]
    sizes = list(sizes) if len(sizes) > 1 and sum(sizes) == len(items) else []
    numbers = _page_numbers(len(items), sizes)
    rename = dict(rules.rename)
    descriptions = dict(rules.descriptions)
    names_kind = kind in ("tools", "prompts")
    problems: list[str] = []
    noun = _NOUN[kind]

    kept: list[tuple[int, dict[str, Any], str]] = []  # (page, item, its own name)
    own_names: list[str] = []
    for page, item in zip(numbers, items, strict=True):
        own = item.get(key)
        if not isinstance(own, str):
            kept.append((page, item, ""))
            continue
        own_names.append(own)
        if rules.empty or rules.hides(own) is None:
            kept.append((page, item, own))

    offered_own = {own for _, _, own in kept if own}
    for source, target in rename.items():
        if target != source and target in offered_own and rename.get(target, target) == target:
            problems.append(
                f'{rules.table} rename {source} = "{target}": the server already has '
                f"a {noun} named {target!r} (rename or deny that one first)"
            )
    shown_of: dict[str, str] = {}
    for _, _, own in kept:
        if own:
            target = rename.get(own, own)
            clash = target != own and target in offered_own and rename.get(target, target) == target
            shown_of[own] = own if clash else target
    assigned = assign_names(shown_of.values()) if names_kind else {}

    local: dict[str, str] = {}
    prefixed: dict[str, str] = {}
    renamed: dict[str, str] = {}
    one: list[tuple[int, dict[str, Any]]] = []
    many: list[tuple[int, dict[str, Any]]] = []
    for page, item, own in kept:
        if not own:
            one.append((page, item))
            many.append((page, _prefixed(server, kind, item, item.get(key))))
            continue
        shown = assigned.get(shown_of[own], shown_of[own]) if names_kind else own
        description = next(
            (descriptions[n] for n in (shown_of[own], shown, own) if n in descriptions), None
        )
        changed = dict(item)
        if names_kind:
            changed["name"] = shown
        if description is not None:
            changed["description"] = description
        if shown != own:
            renamed[own] = shown
        full = _prefixed(server, kind, changed, shown)
        if names_kind:
            local[shown] = own
            prefixed[full["name"]] = own
        one.append((page, changed))
        many.append((page, full))

    shown_names = set(local) | set(renamed.values())
    problems.extend(_unmatched(rules, noun, [*own_names, *others], shown_names))
    return Offered(
        server=server,
        kind=kind,
        pages=_cut(one, sizes),
        prefixed_pages=_cut(many, sizes),
        local=local,
        prefixed=prefixed,
        renamed=renamed,
        problems=problems,
        listed=len(items),
    )


def _prefixed(server: str, kind: str, item: dict[str, Any], shown: Any) -> dict[str, Any]:
    full = dict(item)
    if kind == "resources":
        full["uri"] = f"{URI_PREFIX}{server}/{item.get('uri', '')}"
    elif kind == "resource_templates":
        full["uriTemplate"] = f"{URI_PREFIX}{server}/{item.get('uriTemplate', '')}"
    name = shown if kind in ("tools", "prompts") else item.get("name")
    if isinstance(name, str):
        full["name"] = aggregate_name(server, name)
    return full


def _unmatched(rules: Rules, noun: str, names: list[str], shown: set[str]) -> list[str]:
    """Globs, renames and descriptions of `rules` that name none of `names`."""
    problems = []
    count = f"{len(names)} {noun}{'s' if len(names) != 1 else ''}"
    for key, globs in (("allow", rules.allow or ()), ("deny", rules.deny)):
        for glob in globs:
            if not any(matches(name, (glob,)) for name in names):
                problems.append(f'{rules.table} {key} "{glob}" matches none of its {count}')
    present = set(names)
    for source, _ in rules.rename:
        if source not in present:
            problems.append(f"{rules.table} rename {source}: the server has no {noun} {source!r}")
    for name, _ in rules.descriptions:
        if name not in present and name not in shown:
            problems.append(
                f"{rules.table} descriptions {name}: no {noun} {name!r} is offered "
                "(use the name it is offered under, or the server's own)"
            )
    return problems
