"""Command-line usage errors as one line on stderr, exit code 2.

Typer reports a bad option or an unknown command in a framed, many-line
box; scripts and people alike read one line better, and the rest of the
CLI's errors are one line already (``bicameral: error: ...``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

from bicameral.cli._errors import CommandFailed, failed

try:  # Typer >= 0.22 vendors Click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on Click
    from click.exceptions import UsageError  # type: ignore[assignment]

__all__ = ["OneLineGroup", "UsageError", "usage_error"]


def usage_error(exc: UsageError) -> CommandFailed:
    """A Click usage error as one line on stderr and exit code 2."""
    path = exc.ctx.command_path if exc.ctx is not None else "bicameral"
    return failed(f"{exc.format_message()} (see `{path} --help`)", code=2)


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


def _plain_type(label: str | None) -> str | None:
    """``<path>`` -> ``PATH``, ``<list[str]>`` -> ``TEXT...``: help that reads like any CLI's."""
    if not label or not label.startswith("<") or not label.endswith(">"):
        return label
    inner = label[1:-1]
    many = inner.startswith("list[")
    if many:
        inner = inner[5:-1]
    name = {"str": "TEXT", "float": "SECONDS", "int": "N"}.get(inner, inner.upper())
    return name + ("..." if many else "")


def _install_plain_help() -> None:
    """Typer (0.29) shows ``<bool>`` beside every flag and ``<str>`` beside text:
    flags get no type at all, and the others a plain upper-case name."""
    from typer import core

    option_display = core.TyperOption.display_type_rich
    argument_display = core.TyperArgument.display_type_rich

    def option_type(self: Any, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return _plain_type(option_display(self, ctx))

    def argument_type(self: Any, ctx: Any) -> str | None:
        return _plain_type(argument_display(self, ctx))

    def usage_name(self: Any) -> str:
        # `NAME` for a required argument, `[NAME]` for an optional one, as
        # usage lines everywhere write them (Typer writes `{NAME}`).
        name = str(self.display_name_raw)
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if not name.isupper() and not name.startswith("-"):
            name = name.upper()
        if not self.required:
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    core.TyperOption.display_type_rich = option_type  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = argument_type  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_install_plain_help()
