"""What the root command's options leave for its subcommands.

``bicameral --home DIR <command>``: the root callback stores ``--home`` (or
``$BICAMERAL_HOME``) in the root context's ``obj``; every subcommand reads it
back through :func:`root_home`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["root_home"]


def root_home(ctx: Any) -> str | None:
    """The state directory given to the root command, or ``None`` for the default."""
    obj = ctx.find_root().obj
    home = obj.get("home") if isinstance(obj, dict) else None
    return str(home) if home else None
