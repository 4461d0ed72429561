"""Wait for a supervisor tree to reach a state, on events, never by polling.

``until_state(sup, "adapters/files", "running")`` names a child by its path
from `sup` (nested supervisors separated by ``/``) and returns once it is in
that state; ``until_restarts`` once it has been restarted at least so often.
Both wake on `Supervisor.wait_until`'s change notifications, so they are
exact under ``autojump_clock`` and cost nothing while they wait; they work
under Trio and asyncio alike (anyio). Bound them with ``trio.fail_after`` /
``anyio.fail_after`` when the state might never come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bicameral.supervisor import ChildHandle, Supervisor

__all__ = ["until", "until_restarts", "until_state"]


def _lookup(sup: Supervisor, path: str) -> ChildHandle | None:
    """The child at `path` (``"a/b/c"``), or None while any step is missing."""
    *parents, name = path.split("/")
    current = sup
    for step in parents:
        try:
            target = current.child(step).spec.target
        except KeyError:
            return None
        if not isinstance(target, Supervisor):
            raise ValueError(f"{step!r} in {path!r} is not a supervisor")
        current = target
    try:
        return current.child(name)
    except KeyError:
        return None


async def until(sup: Supervisor, path: str, predicate: Callable[[ChildHandle], Any]) -> ChildHandle:
    """Return the child at `path` once ``predicate(child)`` holds for it."""
    found: list[ChildHandle] = []

    def check() -> bool:
        child = _lookup(sup, path)
        if child is not None and predicate(child):
            found[:] = [child]
            return True
        return False

    await sup.wait_until(check)
    return found[0]


async def until_state(sup: Supervisor, path: str, state: str) -> ChildHandle:
    """Return the child at `path` once its ``state`` is `state`.

    States are the snapshot's: ``starting``, ``running``, ``backoff``,
    ``stopping``, ``stopped``, ``failed``.
    """
    return await until(sup, path, lambda child: child.state == state)


async def until_restarts(sup: Supervisor, path: str, restarts: int) -> ChildHandle:
    """Return the child at `path` once it has been restarted `restarts` times or more."""
    return await until(sup, path, lambda child: child.restarts >= restarts)
