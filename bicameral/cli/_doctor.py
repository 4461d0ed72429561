"""``bicameral doctor``: check a user's setup, say what is wrong and how to fix it.

The checks live in the layers they are about (:mod:`bicameral.daemon._doctor`,
:mod:`bicameral.mcp._doctor`); this command only runs them and prints. On a
terminal, one line per check (``ok`` / ``WARNING`` / ``PROBLEM``) with the fix
under it; when stdout is not a terminal, or with ``--json``, one JSON object
``{"ok": bool, "home": str, "checks": [{"name", "status", "message", "fix"}]}``.
Exit 0 when no check found a problem (warnings included), 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bicameral.cli._options import daemon_option

if TYPE_CHECKING:
    from bicameral.daemon import Check

__all__ = ["doctor"]

_LABELS = {"ok": "ok", "warning": "WARNING", "problem": "PROBLEM"}


def _render(home: Path, checks: list[Check]) -> str:
    lines = [f"bicameral doctor: {home}"]
    for check in checks:
        label = _LABELS.get(check.status, check.status)
        lines.append(f"  {label:<8} {check.name}: {check.message}")
        if check.fix and check.status != "ok":
            lines.append(f"  {'':<8} fix: {check.fix}")
    counts = {status: sum(1 for c in checks if c.status == status) for status in _LABELS}
    lines.append(
        f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['problem']} problem(s)"
    )
    return "\n".join(lines)


def doctor(
    ctx: typer.Context,
    *,
    descriptor: Annotated[Path | None, daemon_option("descriptor")] = None,
    socket: Annotated[Path | None, daemon_option("socket")] = None,
    config: Annotated[Path | None, daemon_option("config")] = None,
    json_output: Annotated[bool, daemon_option("json")] = False,
) -> None:
    """Check the state dir, socket path, descriptor, lock, config, servers and daemon.

    Exit codes: 0 nothing wrong (warnings allowed), 1 at least one problem.
    """
    from bicameral.cli._context import root_home
    from bicameral.cli._fast import emit, wants_json
    from bicameral.daemon import PROBLEM, daemon_checks, resolve_paths
    from bicameral.mcp import mcp_checks

    paths = resolve_paths(root_home(ctx), descriptor=descriptor, socket=socket, config=config)
    checks = daemon_checks(paths) + mcp_checks(paths)
    ok = not any(check.status == PROBLEM for check in checks)
    result = {
        "ok": ok,
        "home": str(paths.home),
        "checks": [check.to_dict() for check in checks],
    }
    as_json = wants_json(json_output)
    emit(result, as_json, "" if as_json else _render(paths.home, checks))
    if not ok and as_json:
        problems = [c for c in checks if c.status == PROBLEM]
        sys.stderr.write(f"bicameral: doctor found {len(problems)} problem(s)\n")
    raise typer.Exit(0 if ok else 1)
