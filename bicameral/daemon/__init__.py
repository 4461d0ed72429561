"""The bicameral daemon: one detached Trio process per user and state directory."""

from bicameral.daemon._errors import ConfigError, DaemonError

__all__ = ["ConfigError", "DaemonError"]
