"""The supervisor tree as plain data: what `Supervisor.snapshot()` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bicameral.supervisor._child import _MISSING, ChildHandle, json_or_missing

if TYPE_CHECKING:
    from bicameral.supervisor._supervisor import Supervisor

__all__ = ["child_entry", "supervisor_entry"]


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
            sub: Supervisor = handle.spec.target
            children = entry["children"]
            for c in sub._children:
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
    }
    if child.value is not _MISSING and child.value is not None:
        value = json_or_missing(child.value)
        if value is not _MISSING:
            entry["started_value"] = value
    if spec.kind == "supervisor":
        sub: Supervisor = spec.target
        entry["strategy"] = sub.strategy.value
        entry["max_restarts"] = sub.max_restarts
        entry["max_seconds"] = sub.max_seconds
        entry["children"] = []
    return entry


def supervisor_entry(sup: Supervisor) -> dict[str, Any]:
    """A supervisor seen from above: the root of a snapshot."""
    return {
        "name": sup.name,
        "kind": "supervisor",
        "state": sup.state,
        "strategy": sup.strategy.value,
        "restarts": max(0, sup._runs - 1),
        "started_at": sup._started_at,
        "last_exit": None,
        "max_restarts": sup.max_restarts,
        "max_seconds": sup.max_seconds,
        "children": [child_entry(c) for c in sup._children],
    }
