"""`Command`: an OS process as a supervised child."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from bicameral.supervisor._child import _current
from bicameral.supervisor._errors import ProcessExitedError
from bicameral.supervisor._process import DEVNULL, open_process_group

__all__ = ["Command"]


class Command:
    """A `ChildSpec.target` that runs `argv` as a *process* child.

    The process runs through `open_process_group`: its own process tree
    (session and process group; a Job Object on Windows), ended on our death
    (a parent-death signal on Linux, the job on Windows, the daemon's reaper
    on macOS), stdin from the null device, stdout and stderr inherited. It
    counts as started once it has been spawned, with ``started_value``
    ``{"pid": N}``.

    Exit status 0 is a normal exit; anything else, a signal included, is a
    crash (`ProcessExitedError`), so `Restart` applies as to any child. A
    program that cannot be started at all (`OSError`) crashes likewise.

    Stopping: a graceful stop asks the whole tree to exit (SIGTERM to the
    group; CTRL_BREAK on Windows) as soon as ``current_child().stopping`` is
    set; if the root has not exited when the spec's `shutdown` grace runs
    out, the supervisor cancels the child and the tree is killed at once
    (SIGKILL to the group; the job ended). Cancellation from outside,
    likewise, asks and then at once kills. No grandchild survives.

    Compared by value (argv, env, cwd), so a reload can tell a changed
    command from an unchanged one.
    """

    __slots__ = ("argv", "cwd", "env")
    _bicameral_kind = "process"

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(argv, str) or not argv:
            raise ValueError("Command argv must be a non-empty sequence of strings")
        self.argv: tuple[str, ...] = tuple(argv)
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.cwd: str | None = os.fspath(cwd) if cwd is not None else None

    def __repr__(self) -> str:
        return f"Command({list(self.argv)!r}, env={self.env!r}, cwd={self.cwd!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return (self.argv, self.env, self.cwd) == (other.argv, other.env, other.cwd)

    def __hash__(self) -> int:
        env = tuple(sorted(self.env.items())) if self.env is not None else None
        return hash((self.argv, env, self.cwd))

    async def __call__(
        self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        handle = _current.get(None)
        # grace=0: by the time the context exits on cancellation, the
        # supervisor's own grace (the request sent on `stopping`) is spent.
        async with open_process_group(
            self.argv, env=self.env, cwd=self.cwd, stdin=DEVNULL, stdout=None, grace=0.0
        ) as proc:
            task_status.started({"pid": proc.pid})
            if handle is None:
                code = await proc.wait()
            else:
                async with anyio.create_task_group() as tg:

                    async def terminate_on_stop() -> None:
                        await handle.stopping.wait()
                        proc.terminate()

                    tg.start_soon(terminate_on_stop)
                    code = await proc.wait()
                    tg.cancel_scope.cancel()
        if code != 0:
            raise ProcessExitedError(self.argv, proc.pid, code)
