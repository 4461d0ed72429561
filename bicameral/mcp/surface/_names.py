"""The names a client sees: ``^[A-Za-z0-9_-]{1,64}$``, unique in the view, stable.

MCP allows longer names and a few more characters (``.``, ``/``), but the
model APIs behind most clients accept only this: a tool named otherwise is
rejected by some clients, or the whole list with it. So every view shows
each name as it is when it already qualifies, and otherwise a name made
from it that does:

* characters outside the set become ``_``;
* a name over 64 characters is cut, and ends with ``_`` and 8 hex digits of
  the SHA-256 of the whole name, so two long names that share a prefix stay
  apart;
* a changed name that then equals another name of the same list gets the
  hash too.

Each is a function of the name alone (the last, of the names beside it,
and only when two would collide), so a name is the same after every restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = [
    "MAX_NAME",
    "SEPARATOR",
    "aggregate_name",
    "assign_names",
    "check_name",
    "split_name",
    "unique_name",
    "valid_name",
]

#: The longest name clients accept.
MAX_NAME = 64
#: Between a server's name and its tool's in an aggregated view.
SEPARATOR = "__"

_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_-]")


def valid_name(name: str) -> bool:
    """Whether `name` matches ``^[A-Za-z0-9_-]{1,64}$``."""
    return _VALID.fullmatch(name) is not None


def check_name(name: object) -> str | None:
    """Why `name` cannot be shown to a client (a rename's target), or ``None``."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters, not {len(name)}"
    if not valid_name(name):
        return f"may hold only letters, digits, '_' and '-', not {name!r}"
    return None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def unique_name(name: str) -> str:
    """A valid name made from `name` and its hash (for a name that must differ from others)."""
    return _hashed(name)


def _hashed(name: str) -> str:
    clean = _INVALID_CHAR.sub("_", name) or "_"
    return f"{clean[: MAX_NAME - 9]}_{_digest(name)}"


def _plain(name: str) -> str:
    """`name` made valid without a hash where that is enough (kept short otherwise)."""
    if valid_name(name):
        return name
    clean = _INVALID_CHAR.sub("_", name)
    if 0 < len(clean) <= MAX_NAME:
        return clean
    return _hashed(name)


def aggregate_name(server: str, name: str) -> str:
    """``<server>__<name>`` as a valid name, without regard to the names beside it."""
    return _plain(f"{server}{SEPARATOR}{name}")


def assign_names(names: Iterable[str]) -> dict[str, str]:
    """Each name of one list -> the name a client sees: valid, unique, stable.

    A name that is valid as it is keeps it. One that had to change keeps its
    plain form unless another name of the list has it (valid or changed
    too); then it gets its hash. Names equal to one another (a server that
    lists a tool twice) map to the same name.
    """
    names = list(dict.fromkeys(names))
    taken = {n for n in names if valid_name(n)}
    plain = {n: _plain(n) for n in names if n not in taken}
    counts: dict[str, int] = {}
    for shown in plain.values():
        counts[shown] = counts.get(shown, 0) + 1
    result: dict[str, str] = {}
    for name in names:
        if name in taken:
            result[name] = name
            continue
        shown = plain[name]
        if shown in taken or counts[shown] > 1:
            shown = _hashed(name)
        result[name] = shown
    return result


def split_name(name: str, servers: Iterable[str]) -> tuple[str, str] | None:
    """``<server>__<rest>`` split against `servers` (the longest match wins), or ``None``."""
    best: str | None = None
    for server in servers:
        if name.startswith(server + SEPARATOR) and (best is None or len(server) > len(best)):
            best = server
    if best is None:
        return None
    return best, name[len(best) + len(SEPARATOR) :]
