"""The adapter child's entry point, kept free of the MCP SDK.

Importing the SDK costs ~0.7 s; starting a typical stdio server costs about
as much. So the first adapter to run spawns its server *before* it imports
the SDK, and the two overlap (the server boots in its own process, on another
core). The spawned process is then handed to `_upstream.run_adapter`, which
owns it from there. Later adapters, and restarts, find the SDK loaded.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from bicameral.mcp._spawn import SpawnError, spawn_server

if TYPE_CHECKING:
    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._registry import Registry

__all__ = ["run_adapter"]


async def run_adapter(
    config: ServerConfig,
    registry: Registry,
    *,
    task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The ``adapters`` child for one configured MCP server (see `bicameral.mcp._upstream`)."""
    prespawned: Any = None
    if "bicameral.mcp._upstream" not in sys.modules:
        try:
            prespawned = await spawn_server(config)
        except SpawnError as exc:
            prespawned = exc
    try:
        from bicameral.mcp import _upstream
    except BaseException:
        if isinstance(prespawned, tuple):
            with anyio.CancelScope(shield=True):
                await prespawned[0].__aexit__(None, None, None)
        raise
    await _upstream.run_adapter(config, registry, task_status=task_status, prespawned=prespawned)
