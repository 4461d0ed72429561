"""The daemon's own log: text or JSON lines, to stderr or a rotated private file.

In the foreground (``daemon serve``) the log goes to stderr, for the
service manager or the container platform to keep; detached (``daemon
start``) to ``daemon.log``, rotated at `LOG_MAX_BYTES` with `LOG_BACKUPS`
old files, each created 0600. The audit log (:mod:`._audit`) rotates the
same way.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from bicameral.daemon._options import LOG_LEVELS

__all__ = [
    "LOG_BACKUPS",
    "LOG_MAX_BYTES",
    "JsonFormatter",
    "private_rotating_handler",
    "setup_logging",
]

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


def private_rotating_handler(path: Path) -> logging.Handler:
    """A size-rotated log whose every file (the rotated ones too) is created 0600."""
    from logging.handlers import RotatingFileHandler

    class PrivateRotatingFileHandler(RotatingFileHandler):
        def _open(self) -> Any:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    return PrivateRotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, delay=True, encoding="utf-8"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (``--log-format json``).

    Keys: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
    ``pid``, ``message`` and, when the record carries one, ``exc`` (the
    formatted traceback): the same facts as the text format, machine-readable.
    """

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str, log_path: Path | None) -> logging.Handler:
    """The ``bicameral`` logger at `level` in `fmt`: to `log_path` (rotated), else stderr."""
    root = logging.getLogger("bicameral")
    level = level.lower()
    root.setLevel(getattr(logging, level.upper()) if level in LOG_LEVELS else logging.INFO)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
        )
    handler: logging.Handler
    if log_path is not None:
        handler = private_rotating_handler(log_path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return handler
