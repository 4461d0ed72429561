"""The Typer application: the root command and its global options."""

from __future__ import annotations

from typing import Annotated

import typer

import bicameral
from bicameral.cli._client import client_app
from bicameral.cli._daemon import daemon_app
from bicameral.cli._dashboard import dashboard
from bicameral.cli._doctor import doctor
from bicameral.cli._mcp import mcp_app
from bicameral.cli._mcp_tools import tools
from bicameral.cli._usage import OneLineGroup

app = typer.Typer(
    name="bicameral",
    cls=OneLineGroup,
    help="Keep MCP servers alive under one supervised per-user daemon.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(daemon_app, name="daemon")
mcp_app.command("tools")(tools)
app.add_typer(mcp_app, name="mcp")
app.add_typer(client_app, name="client")
app.command("doctor")(doctor)
app.command("dashboard")(dashboard)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bicameral {bicameral.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            metavar="PATH",
            help="State directory (default: $BICAMERAL_HOME or ~/.bicameral).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """bicameral: one supervised daemon per user for your MCP servers."""
    ctx.obj = {"home": home}


def run(args: list[str]) -> None:
    """Run the Typer app on ``args`` and exit with its code."""
    app(args=args, prog_name="bicameral")
