"""The supervisor tree as plain data: what `Supervisor.snapshot()` returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bicameral.supervisor._child import _MISSING, ChildHandle, json_or_missing
from bicameral.supervisor._spec import Strategy

__all__ = ["Subtree", "child_entry", "supervisor_entry"]


class Subtree(Protocol):
    """What the snapshot reads of a supervisor (a `Supervisor`, seen from here)."""

    name: str
    strategy: Strategy

    @property
    def max_restarts(self) -> int: ...

    @property
    def max_seconds(self) -> float: ...

    @property
    def state(self) -> str: ...

    @property
    def children(self) -> Sequence[ChildHandle]: ...


def child_entry(child: ChildHandle) -> dict[str, Any]:
    """One child as its parent sees it; a subtree adds its own strategy and children.

    Built with an explicit stack, not recursion: a tree as deep as a program
    can build must not end in `RecursionError` when someone asks to see it.
    """
    root = _one(child)
    stack = [(root, child)]
    while stack:
        entry, handle = stack.pop()
        if handle.spec.kind == "supervisor":
            sub: Subtree = handle.spec.target
            children = entry["children"]
            for c in sub.children:
                sub_entry = _one(c)
                children.append(sub_entry)
                stack.append((sub_entry, c))
    return root


def _one(child: ChildHandle) -> dict[str, Any]:
    spec = child.spec
    entry: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "state": child.state,
        "restarts": child.restarts,
        "restart": spec.restart.value,
        "started_at": child.started_at,
        "last_exit": dict(child.last_exit) if child.last_exit is not None else None,
        "retry_at": child.retry_at,
    }
    if child.value is not _MISSING and child.value is not None:
        value = json_or_missing(child.value)
        if value is not _MISSING:
            entry["started_value"] = value
    if spec.kind == "supervisor":
        _subtree_fields(entry, spec.target)
        entry["children"] = []
    return entry


def _subtree_fields(entry: dict[str, Any], sub: Subtree) -> None:
    entry["strategy"] = sub.strategy.value
    entry["max_restarts"] = sub.max_restarts
    entry["max_seconds"] = sub.max_seconds


def supervisor_entry(sup: Subtree, restarts: int, started_at: float | None) -> dict[str, Any]:
    """A supervisor seen from above: the root of a snapshot."""
    entry: dict[str, Any] = {
        "name": sup.name,
        "kind": "supervisor",
        "state": sup.state,
        "strategy": sup.strategy.value,
        "restarts": restarts,
        "started_at": started_at,
        "last_exit": None,
    }
    _subtree_fields(entry, sup)
    entry["children"] = [child_entry(c) for c in sup.children]
    return entry
