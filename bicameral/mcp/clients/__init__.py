"""MCP clients on this machine: find them, put them on bicameral, take them back.

What ``bicameral client list | setup | undo`` run (docs/clients.md):

- :mod:`._catalogue`: the known clients and their config paths on Linux,
  macOS and Windows (a pure function of platform, home, environment and
  project directory);
- :mod:`._dialect`: how each client spells a server entry;
- :mod:`._jsonc` and :mod:`._formats`: reading JSONC and TOML configs and
  rewriting entries in them without touching any other byte;
- :mod:`._records`: the backups and the record of what setup wrote;
- :mod:`._inventory` (``list``) and :mod:`._setup` (``setup``, ``undo``).
"""

from __future__ import annotations

from bicameral.mcp.clients._catalogue import Client, find_client, known_clients
from bicameral.mcp.clients._inventory import Machine, list_clients
from bicameral.mcp.clients._setup import (
    ON_CLASH,
    bicameral_executable,
    bridge_argv,
    setup_client,
    undo_client,
)

__all__ = [
    "ON_CLASH",
    "Client",
    "Machine",
    "bicameral_executable",
    "bridge_argv",
    "find_client",
    "known_clients",
    "list_clients",
    "setup_client",
    "undo_client",
]
