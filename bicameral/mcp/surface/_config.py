"""``[mcp.servers.NAME.tools]`` (``.prompts``, ``.resources``) and ``[mcp.profiles.NAME]``.

Validated with the rest of ``config.toml`` (`bicameral.mcp._config` calls
`load_surface`): every problem is a :class:`~bicameral.daemon.ConfigError`
whose one line names the file, the table and the key, for example
``config.toml: [mcp.profiles.coding] "servers" names no configured server
'gh' (configured: files, github; did you mean 'github'?)``. What can only be
checked against a server's own lists (a glob that matches nothing, a rename
onto a name the server already has, a pinned tool that does not exist) is
checked by `check_lists` where the lists are known, and otherwise warned
about when the server first lists them (`bicameral.mcp.surface.Surface`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bicameral.daemon import ConfigError
from bicameral.mcp.surface._names import SEPARATOR, check_name
from bicameral.mcp.surface._rules import KINDS, SEARCH_MODES, Profile, Rules, ServerRules
from bicameral.mcp.surface._surface import OWN_PREFIX, OWN_TOOLS, Source, Surface, SurfaceConfig

__all__ = ["PROFILE_KEYS", "RULE_KEYS", "check_lists", "load_surface"]

#: The keys of ``[mcp.servers.NAME.tools]`` and ``.prompts`` (``.resources``: no rename).
RULE_KEYS = ("allow", "deny", "rename", "descriptions")
#: The keys of ``[mcp.profiles.NAME]``.
PROFILE_KEYS = ("servers", "allow", "deny", "search", "search_threshold", "pinned")
#: The longest description a rule may set (a description is sent with every list).
MAX_DESCRIPTION = 4096

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _unknown(head: str, key: str, known: Iterable[str]) -> ConfigError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{head} unknown key {key!r} (expected one of: {', '.join(known)}){hint}")


def _globs(head: str, table: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f'{head} "{key}" must be a list of globs (non-empty strings), '
            f'for example {key} = ["get_*", "list_*"]'
        )
    return tuple(value)


def _strings(head: str, table: Mapping[str, Any], key: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigError(
            f'{head} "{key}" must be a table of non-empty strings ({key} = {{ name = "..." }})'
        )
    return dict(value)


def _rules(file: str, server: str, kind: str, table: object) -> Rules:
    head = f"{file}: [mcp.servers.{server}.{kind}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{head} must be a table of {', '.join(RULE_KEYS)}")
    keys = RULE_KEYS if kind != "resources" else ("allow", "deny", "descriptions")
    for key in table:
        if key not in keys:
            if key == "rename" and kind == "resources":
                raise ConfigError(
                    f'{head} "rename": resources cannot be renamed (their URI names them)'
                )
            raise _unknown(head, key, keys)
    allow = _globs(head, table, "allow")
    deny = _globs(head, table, "deny") or ()
    rename = _strings(head, table, "rename")
    targets: dict[str, str] = {}
    for source, target in rename.items():
        problem = check_name(target)
        if problem is not None:
            raise ConfigError(f'{head} rename {source} = "{target}": a name {problem}')
        if target in targets:
            raise ConfigError(
                f'{head} rename {source} = "{target}": {targets[target]!r} is renamed '
                f"to {target!r} too (names must stay unique)"
            )
        targets[target] = source
    descriptions = _strings(head, table, "descriptions")
    for name, text in descriptions.items():
        if len(text) > MAX_DESCRIPTION:
            raise ConfigError(
                f"{head} descriptions {name}: at most {MAX_DESCRIPTION} characters, not {len(text)}"
            )
    return Rules(
        table=f"[mcp.servers.{server}.{kind}]",
        allow=allow,
        deny=deny,
        rename=tuple(rename.items()),
        descriptions=tuple(descriptions.items()),
    )


def _profile(file: str, name: str, table: object, servers: list[str]) -> Profile:
    head = f"{file}: [mcp.profiles.{name}]"
    if not _PROFILE_NAME.fullmatch(name):
        raise ConfigError(
            f"{file}: [mcp.profiles] invalid profile name {name!r}: use 1 to 64 letters, "
            "digits, '-' and '_' (it is part of /mcp/p/NAME)"
        )
    if not isinstance(table, Mapping):
        raise ConfigError(f"{head} must be a table of {', '.join(PROFILE_KEYS)}")
    for key in table:
        if key not in PROFILE_KEYS:
            raise _unknown(head, key, PROFILE_KEYS)
    chosen: tuple[str, ...] | None = None
    if "servers" in table:
        value = table["servers"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{head} "servers" must be a list of server names')
        for server in value:
            if server not in servers:
                close = difflib.get_close_matches(server, servers, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f'{head} "servers" names no configured server {server!r} '
                    f"(configured: {', '.join(servers) or 'none'}){hint}"
                )
        chosen = tuple(dict.fromkeys(value))
    search = table.get("search", "off")
    if search not in SEARCH_MODES:
        raise ConfigError(
            f'{head} "search" must be one of {", ".join(repr(m) for m in SEARCH_MODES)}, '
            f"not {search!r}"
        )
    threshold = table.get("search_threshold", 40)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigError(
            f'{head} "search_threshold" must be a whole number of tools (0 or more), '
            f"not {threshold!r}"
        )
    pinned = _globs(head, table, "pinned") or ()
    shown = list(chosen) if chosen is not None else servers
    for tool in pinned:
        problem = check_name(tool)
        if problem is not None:
            raise ConfigError(f'{head} pinned "{tool}": a tool name {problem}')
        owner = tool.partition(SEPARATOR)[0] if SEPARATOR in tool else None
        if owner != OWN_PREFIX and not any(tool.startswith(s + SEPARATOR) for s in shown):
            raise ConfigError(
                f'{head} pinned "{tool}": not a tool of this view (its names are '
                f"<server>{SEPARATOR}<tool>, servers: {', '.join(shown) or 'none'})"
            )
    return Profile(
        name=name,
        table=f"[mcp.profiles.{name}]",
        servers=chosen,
        allow=_globs(head, table, "allow"),
        deny=_globs(head, table, "deny") or (),
        search=str(search),
        search_threshold=threshold,
        pinned=tuple(pinned),
    )


def load_surface(config: Mapping[str, Any], file: str, servers: Mapping[str, Any]) -> SurfaceConfig:
    """The rules and profiles of a parsed ``config.toml`` whose `servers` are valid.

    `servers`: the ``[mcp.servers]`` tables already validated (by name);
    `file` names the file in messages. Raises :class:`ConfigError`.
    """
    result = SurfaceConfig(file=file)
    mcp = config.get("mcp")
    if not isinstance(mcp, Mapping):
        return result
    tables = mcp.get("servers")
    for name in servers:
        table = tables.get(name) if isinstance(tables, Mapping) else None
        if not isinstance(table, Mapping):
            continue
        kinds = {kind: _rules(file, name, kind, table[kind]) for kind in KINDS if kind in table}
        if kinds:
            result.rules[name] = ServerRules(**kinds)
    profiles = mcp.get("profiles")
    if profiles is None:
        return result
    if not isinstance(profiles, Mapping):
        raise ConfigError(f'{file}: "mcp.profiles" must be a table of [mcp.profiles.NAME] tables')
    names = list(servers)
    for name, table in profiles.items():
        result.profiles[name] = _profile(file, name, table, names)
    return result


def check_lists(
    config: SurfaceConfig, sources: Iterable[Source], servers: Iterable[str] = ()
) -> list[str]:
    """What `config` gets wrong about the lists of `sources` (servers that have listed).

    `servers`: every server the configuration names; those without a
    source (not started yet) count as not listed, so nothing is concluded
    about a profile's globs from the servers that happen to run.

    Each problem names the table and key (a reload refuses them all, the
    first in its message): a glob that matches nothing, a rename onto a name
    the server has or of a name it does not, a description of nothing, a
    pinned tool the view does not have.
    """
    surface = Surface(config, warn=False)
    problems: list[str] = []
    sources = list(sources)
    present = {s.server for s in sources}
    sources += [Source(n, {}, {}, listed=False) for n in servers if n not in present]
    listed = [s for s in sources if s.listed]
    for source in listed:
        rules = config.rules.get(source.server)
        if rules is None:
            continue
        for kind in ("tools", "prompts", "resources", "resource_templates"):
            if not rules.of(kind).empty:
                problems.extend(surface.offered(source, kind).problems)
    for profile in config.profiles.values():
        mine = [s for s in sources if profile.shows(s.server)]
        if all(s.listed for s in mine):
            problems.extend(surface.catalog(profile, "tools", mine, OWN_TOOLS).problems)
    return list(dict.fromkeys(problems))
