"""The daemon's options as Typer options, made from `bicameral.daemon`'s table.

`typer_option` gives one row of the table as a Typer parameter (the
``Annotated`` type a command's signature uses); `table_command` makes a
whole command whose options are the rows naming it, and hands their values
to a runner as the dict the fast path (:mod:`bicameral.cli._fast`) makes,
keyed by option name. So a daemon option is declared once, in
`bicameral.daemon.DAEMON_OPTIONS`, whichever parser reads it.
"""

from __future__ import annotations

import enum
import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bicameral.daemon import DAEMON_OPTIONS, DaemonOption, daemon_options

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["daemon_option", "option_values", "table_command", "typer_option"]


@functools.cache
def _choices(name: str, values: tuple[str, ...]) -> type[enum.StrEnum]:
    """An enum of `values` (Typer shows them as ``[a|b]`` and checks them)."""
    members = {value: value for value in values}
    return enum.StrEnum(name.title().replace("-", ""), members)  # type: ignore[return-value]


def _help(option: DaemonOption) -> str:
    """The help as Typer's rich markup: ``[daemon.http]`` is text, not a style."""
    return option.help.replace("[", "\\[")


def typer_option(option: DaemonOption) -> Any:
    """``Annotated[type, typer.Option(...)]`` for one row of the table."""
    extra: dict[str, Any] = {}
    kind: Any
    if option.kind == "flag":
        kind = bool
    elif isinstance(option.kind, tuple):
        kind = _choices(option.name, option.kind) | None
        extra["case_sensitive"] = True
    elif option.kind == "float":
        kind = float
        extra["min"] = 0.0
    elif option.kind == "path":
        kind = Path | None
    else:
        kind = str | None
    if option.metavar is not None:
        extra["metavar"] = option.metavar
    return Annotated[kind, typer.Option(option.flag, help=_help(option), **extra)]


def daemon_option(name: str, command: str | None = None) -> Any:
    """The ``typer.Option`` of table row `name` (of `command`, where rows differ by command)."""
    for option in DAEMON_OPTIONS:
        if option.name == name and (command is None or command in option.commands):
            return typer.Option(option.flag, help=_help(option))
    raise KeyError(name)  # pragma: no cover - a typo in the CLI's source


def option_values(values: dict[str, Any]) -> dict[str, Any]:
    """Typer's parameter values -> the runners' dict (option names; plain values; none unset)."""
    options: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value is False:
            continue
        plain = value.value if isinstance(value, enum.Enum) else value
        options[key.replace("_", "-")] = str(plain) if isinstance(plain, Path) else plain
    return options


def table_command(
    app: typer.Typer, name: str, run: Callable[[typer.Context, dict[str, Any]], int]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `name` on `app` with the table's options of `name`; `run` does the work.

    The decorated function gives only the docstring (the command's help).
    `run` receives the context and the option values, keyed by option name,
    and returns the exit code.
    """

    def register(doc: Callable[..., None]) -> Callable[..., None]:
        params = [
            inspect.Parameter(
                "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
            )
        ]
        annotations: dict[str, Any] = {"ctx": typer.Context, "return": None}
        for option in daemon_options(name, hidden=False):
            annotation = typer_option(option)
            default = False if option.kind == "flag" else option.default
            params.append(
                inspect.Parameter(
                    option.key,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=annotation,
                )
            )
            annotations[option.key] = annotation

        def command(ctx: typer.Context, **values: Any) -> None:
            raise typer.Exit(run(ctx, option_values(values)))

        command.__name__ = name
        command.__doc__ = doc.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = annotations
        app.command(name)(command)
        return doc

    return register
