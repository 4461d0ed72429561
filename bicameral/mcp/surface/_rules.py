"""What a view offers: a server's rules for one kind of item, and a profile's.

`Rules` are ``[mcp.servers.NAME.tools]`` (and ``.prompts``, ``.resources``):
globs on the server's own names (a resource's: its URI, or a template's URI
template), renames and replaced descriptions. `Profile` is
``[mcp.profiles.NAME]``: which servers, globs on the view's prefixed names,
and search mode. Both are frozen, so a reload that changes nothing compares
equal, and both say which rule hides a name, for the error a client gets.

Globs are :func:`fnmatch.fnmatchcase` patterns (``*``, ``?``, ``[...]``),
case-sensitive as names are.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["KINDS", "SEARCH_MODES", "Profile", "Rules", "ServerRules", "matches"]

#: The kinds of item a server's rules can name (each its own table).
KINDS = ("tools", "prompts", "resources")
#: ``search`` of a profile.
SEARCH_MODES = ("off", "on", "auto")


def matches(name: str, globs: tuple[str, ...]) -> str | None:
    """The first of `globs` that `name` matches, or ``None``."""
    for glob in globs:
        if fnmatchcase(name, glob):
            return glob
    return None


def _quoted(globs: tuple[str, ...]) -> str:
    return ", ".join(f'"{g}"' for g in globs)


@dataclass(frozen=True)
class Rules:
    """One server's rules for one kind of item (``[mcp.servers.NAME.tools]``).

    ``allow``: ``None`` offers every item, else only those matching a glob;
    ``deny``: never offered, never callable (deny wins over allow);
    ``rename``: the server's name -> the name clients see;
    ``descriptions``: a name (shown or original) -> the description clients see.
    ``table`` names the table in messages (``config.toml [mcp.servers.x.tools]``).
    """

    table: str = ""
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    descriptions: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        """Whether these rules change nothing (the common case: no table at all)."""
        return self.allow is None and not (self.deny or self.rename or self.descriptions)

    def hides(self, name: str) -> str | None:
        """Why the server's item `name` is hidden (the rule, in words), or ``None``."""
        glob = matches(name, self.deny)
        if glob is not None:
            return f'{self.table} deny "{glob}"'
        if self.allow is not None and matches(name, self.allow) is None:
            if not self.allow:
                return f"{self.table} allow = [] (nothing is allowed)"
            return f"{self.table} allow (it matches none of {_quoted(self.allow)})"
        return None


NO_RULES = Rules()


@dataclass(frozen=True)
class ServerRules:
    """A server's rules for each kind (``tools``, ``prompts``, ``resources``)."""

    tools: Rules = NO_RULES
    prompts: Rules = NO_RULES
    resources: Rules = NO_RULES

    def of(self, kind: str) -> Rules:
        """The rules of `kind` (``resource_templates`` are ``resources``)."""
        if kind == "tools":
            return self.tools
        if kind == "prompts":
            return self.prompts
        return self.resources


@dataclass(frozen=True)
class Profile:
    """A view for a kind of client (``[mcp.profiles.NAME]``).

    ``servers``: the servers it shows (``None``: every one); ``allow`` and
    ``deny``: globs on the view's prefixed names (tools and prompts);
    ``search``: ``off``, ``on``, or ``auto`` (on above ``search_threshold``
    tools); ``pinned``: tools offered directly even in search mode.
    """

    name: str
    table: str = ""
    servers: tuple[str, ...] | None = None
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    search: str = "off"
    search_threshold: int = 40
    pinned: tuple[str, ...] = ()

    def shows(self, server: str) -> bool:
        return self.servers is None or server in self.servers

    def hides(self, name: str) -> str | None:
        """Why the view's (prefixed) `name` is hidden by this profile, or ``None``."""
        return Rules(self.table, self.allow, self.deny).hides(name)

    def searching(self, tools: int) -> bool:
        """Whether a view of `tools` tools is in search mode."""
        if self.search == "auto":
            return tools > self.search_threshold
        return self.search == "on"


#: The aggregated view when no ``[mcp.profiles.default]`` is configured.
DEFAULT_PROFILE = Profile("default")
