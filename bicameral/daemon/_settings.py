"""The ``[daemon]`` table of config.toml and its ``[daemon.limits]``.

``[daemon.http]``, ``[daemon.audit]`` and ``[daemon.store]`` are read by
their own modules (:mod:`._http`, :mod:`._audit`, :mod:`._store`); this one
checks that ``[daemon]`` holds nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.daemon._errors import ConfigError
from bicameral.protocol import Limits

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DAEMON_TABLES", "LIMIT_KEYS", "limits_from_config"]


DAEMON_TABLES = ("limits", "http", "audit", "store")
"""The tables of ``[daemon]``; each is validated by its own ``*_from_config``."""

LIMIT_KEYS = {
    "max_frame": int,
    "max_in_flight": int,
    "max_connections": int,
    "partial_frame_timeout": float,
    "max_buffered": int,
}
"""The keys of ``[daemon.limits]`` in config.toml (`bicameral.protocol.Limits`)."""


def limits_from_config(config: Mapping[str, Any], path: Path | None, default: Limits) -> Limits:
    """``default`` with ``[daemon.limits]`` of config.toml applied.

    Raises :class:`ConfigError` naming the file and the key for an unknown
    key or a bad value. Every key is optional.
    """
    import dataclasses

    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [daemon] must be a table")
    for key in section:
        if key not in DAEMON_TABLES:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon] (known: {', '.join(DAEMON_TABLES)})"
            )
    table = section.get("limits", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.limits] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = LIMIT_KEYS.get(key)
        if kind is None:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.limits] (known: {', '.join(LIMIT_KEYS)})"
            )
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)):
            what = "an integer" if kind is int else "a number of seconds"
            raise ConfigError(f"{where}: [daemon.limits] {key} must be {what}, not {value!r}")
        values[key] = value
    try:
        return dataclasses.replace(default, **values)
    except ValueError as exc:
        raise ConfigError(f"{where}: [daemon.limits] {exc}") from None
