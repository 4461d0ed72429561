"""The audit log: one JSON line per ``tools/call``, in ``<home>/audit.log``.

Off by default; on with ``[daemon.audit] enabled = true``. Each line is one
JSON object with ``time`` (UTC, ISO 8601, milliseconds), ``client`` (the
daemon's id of the client session and the name and version it gave),
``view`` (``"*"`` for the aggregated ``/mcp`` and ``bicameral mcp``, else the
one server the client attached to), ``server``, ``tool``, ``duration_ms`` and
``outcome``: ``ok``, ``tool-error`` (the tool answered ``isError``), ``error``
(a JSON-RPC error: the server's, or bicameral's when the server was not
there) or ``cancelled`` (the client gave up first). The tool's ``arguments``
and ``result`` are added only with ``arguments = true``: they may hold what
the audit log's readers should not see.

The file is created 0600 and rotated like the daemon's log (5 MiB, three
old files kept, each 0600). The MCP layer writes through
:attr:`DaemonHost.audit`; the daemon owns the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bicameral.daemon._errors import ConfigError

__all__ = ["AUDIT_FILE", "AUDIT_KEYS", "AuditLog", "AuditSettings", "audit_from_config"]

AUDIT_FILE = "audit.log"
AUDIT_KEYS: dict[str, type] = {"enabled": bool, "arguments": bool}
"""The keys of ``[daemon.audit]``."""


@dataclass(frozen=True)
class AuditSettings:
    """``[daemon.audit]`` (docs/configuration.md)."""

    enabled: bool = False
    arguments: bool = False


def audit_from_config(config: Mapping[str, Any], path: Path | None) -> AuditSettings:
    """``[daemon.audit]`` of config.toml; `ConfigError` naming the file and key when invalid."""
    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    table = section.get("audit", {}) if isinstance(section, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.audit] must be a table")
    for key, value in table.items():
        kind = AUDIT_KEYS.get(key)
        if kind is None:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.audit] (known: {', '.join(AUDIT_KEYS)})"
            )
        if not isinstance(value, kind):
            raise ConfigError(f"{where}: [daemon.audit] {key} must be true or false, not {value!r}")
    return AuditSettings(
        enabled=bool(table.get("enabled", False)), arguments=bool(table.get("arguments", False))
    )


class AuditLog:
    """Writes audit entries, one JSON line each, through a private rotated file's handler."""

    def __init__(self, path: Path, settings: AuditSettings, handler: logging.Handler) -> None:
        """`handler`: a size-rotated handler whose files are created 0600 (the daemon's)."""
        self.path = path
        self.arguments = settings.arguments
        self._handler = handler
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append `entry` (its ``time`` is added); ``arguments``/``result`` only if allowed."""
        import json
        from datetime import UTC, datetime

        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        for key, value in entry.items():
            if key in ("arguments", "result") and not self.arguments:
                continue
            line[key] = value
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
        record = logging.LogRecord("bicameral.audit", logging.INFO, "", 0, text, None, None)
        self._handler.handle(record)

    def close(self) -> None:
        self._handler.close()
