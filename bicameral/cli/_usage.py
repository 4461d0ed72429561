"""Command-line usage errors as one line on stderr, exit code 2.

Typer reports a bad option or an unknown command in a framed, many-line
box; scripts and people alike read one line better, and the rest of the
CLI's errors are one line already (``bicameral: error: ...``).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from bicameral.cli import _fast

try:  # Typer >= 0.22 vendors Click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on Click
    from click.exceptions import UsageError  # type: ignore[assignment]

__all__ = ["OneLineGroup", "UsageError", "usage_error"]


def usage_error(exc: UsageError) -> typer.Exit:
    """A Click usage error as one line on stderr and exit code 2."""
    path = exc.ctx.command_path if exc.ctx is not None else "bicameral"
    _fast.error(f"{exc.format_message()} (see `{path} --help`)")
    return typer.Exit(2)


def _is_help(exc: UsageError) -> bool:
    # `bicameral daemon` alone: Click raises this to print the group's help.
    return type(exc).__name__ == "NoArgsIsHelpError"


class OneLineGroup(TyperGroup):
    """A group whose usage errors, and those of its commands, print one line and exit 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            if _is_help(exc):
                raise
            raise usage_error(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if _is_help(exc):
                raise
            raise usage_error(exc) from None
