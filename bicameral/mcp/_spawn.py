"""Launching an upstream server's command as its own process tree (no SDK here).

The command is resolved as the OS will run it first (`resolve_command`: on
Windows ``npx`` is ``npx.cmd``, found through ``PATH`` and ``PATHEXT``), so a
command that cannot run says why in one line instead of ENOENT.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from bicameral.platform import CommandError, resolve_command
from bicameral.supervisor import PIPE, ManagedProcess, open_process_group

if TYPE_CHECKING:
    from bicameral.mcp._config import ServerConfig

__all__ = ["PROCESS_GRACE", "SpawnError", "spawn_server"]

#: Process group grace: SIGTERM, then SIGKILL after this many seconds.
PROCESS_GRACE = 2.0

Spawned = tuple[AbstractAsyncContextManager[ManagedProcess], ManagedProcess]


class SpawnError(Exception):
    """The command could not be started; the message says why."""


def _cwd_problem(config: ServerConfig) -> str | None:
    """A missing ``cwd``, said as such: chdir's ENOENT reads as "cannot start 'echo'"."""
    if config.cwd and not os.path.isdir(config.cwd):
        return f"its cwd {config.cwd} is not a directory (`cwd` in config.toml)"
    return None


async def spawn_server(config: ServerConfig) -> Spawned:
    """Start `config`'s command with piped stdio; the entered context and its process.

    The environment is the daemon's, with the server's ``env`` over it. The
    caller must leave the returned context (``__aexit__``), which stops the
    whole process group.
    """
    problem = _cwd_problem(config)
    if problem is not None:
        raise SpawnError(problem)
    env = {**os.environ, **config.env_dict()}
    try:
        argv = resolve_command([config.command, *config.args], environ=env)
    except CommandError as exc:
        raise SpawnError(str(exc)) from None
    manager = open_process_group(
        argv,
        env=env,
        cwd=config.cwd or None,
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
        grace=PROCESS_GRACE,
    )
    try:
        proc = await manager.__aenter__()
    except OSError as exc:
        raise SpawnError(f"cannot start {config.command!r}: {exc.strerror or exc}") from exc
    return manager, proc
