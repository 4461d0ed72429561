"""Errors the daemon layer raises for problems a user can fix."""

from __future__ import annotations

__all__ = ["ConfigError", "DaemonError"]


class DaemonError(Exception):
    """A problem a user can fix; its message is one line naming the problem."""


class ConfigError(DaemonError):
    """``config.toml`` (or a plugin's part of it) is invalid.

    The message names the file, the key and what is wrong, so the CLI can print
    it as is.
    """
