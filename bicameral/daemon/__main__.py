"""``python -m bicameral.daemon serve [options]``: the daemon in the foreground.

The same program as ``bicameral daemon serve``, without the CLI's Typer
import, so ``daemon start`` spawns exactly this (with the hidden
``--detached``, which sends the log to ``daemon.log`` instead of stderr).

Both parsers are made from the options table (`bicameral.daemon._options`).
The command line ``start`` generates is parsed by the table's strict parser
(:func:`_quick_parse`): ``argparse`` builds a help formatter, which imports
``shutil`` and ``locale``, a few milliseconds of every ``daemon start``.
Anything else (``--help``, an error) goes through ``argparse``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    """``argparse`` over the options table (`bicameral.daemon._options`)."""
    import argparse

    from bicameral.daemon._options import DAEMON_OPTIONS, daemon_options

    home = next(o for o in DAEMON_OPTIONS if o.name == "home")
    parser = argparse.ArgumentParser(
        prog="python -m bicameral.daemon",
        description="Run the bicameral daemon in the foreground.",
    )
    parser.add_argument(home.flag, dest="root_home", metavar="PATH", help=home.help)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    for option in daemon_options("serve"):
        kwargs: dict[str, Any] = {
            "dest": option.name,
            "help": argparse.SUPPRESS if option.hidden else option.help,
        }
        if option.kind == "flag":
            kwargs["action"] = "store_true"
        elif isinstance(option.kind, tuple):
            kwargs["choices"] = option.kind
        elif option.kind == "float":
            kwargs["type"] = float
        if option.metavar is not None:
            kwargs["metavar"] = option.metavar
        serve.add_argument(option.flag, **kwargs)
    return parser


def _quick_parse(argv: list[str]) -> dict[str, Any] | None:
    """``serve`` followed by its options only (the table's strict parser); else ``None``."""
    if not argv or argv[0] != "serve":
        return None
    from bicameral.daemon._options import daemon_options, parse_options

    return parse_options(argv[1:], daemon_options("serve"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    values = _quick_parse(args)
    if values is None:
        parsed = vars(_parser().parse_args(args))
        root_home = parsed.pop("root_home")
        del parsed["command"]
        values = {k: v for k, v in parsed.items() if v not in (None, False)}
        if root_home and "home" not in values:
            values["home"] = root_home

    from bicameral.daemon._serve import run_serve
    from bicameral.daemon._signals import remember_early_reloads, remember_early_stops

    remember_early_reloads(_EARLY_HUPS)
    remember_early_stops(_EARLY_STOPS)  # serve acts on them first thing
    return run_serve(values)


#: SIGHUPs that arrived before ``serve`` took over: applied as a reload once ready.
_EARLY_HUPS: list[int] = []
#: Stop signals that arrived before ``serve`` took over: it exits 0 at once.
_EARLY_STOPS: list[int] = []


def _stop_early(signum: int, frame: object) -> None:
    # Only noted: an exception raised from a signal handler lands wherever
    # the interpreter is, and in the middle of a C extension's module
    # initialisation (orjson, seen under test) that can crash the process.
    _EARLY_STOPS.append(signum)


def _hup_early(signum: int, frame: object) -> None:
    _EARLY_HUPS.append(signum)


def _run() -> int:
    """``main()``, with signals during the imports handled from the first line.

    SIGTERM/SIGINT before ``serve`` runs mean "exit 0, quietly" (noted here,
    acted on by ``serve`` before it creates anything); a SIGHUP is
    remembered and becomes a reload once the daemon is ready (SPEC §6).

    ``serve`` installs its own handlers as soon as it runs; until then (the
    ~150 ms of importing Trio) a stop signal would otherwise kill the
    process by the default action, or print a KeyboardInterrupt traceback.
    Nothing exists yet that needs cleaning. The handlers go in first thing,
    through the C module ``_signal`` (``signal`` builds its enums first, a
    few milliseconds of Python's default KeyboardInterrupt under load).
    """
    try:
        import _signal  # type: ignore[import-not-found, unused-ignore]

        _signal.signal(_signal.SIGTERM, _stop_early)
        _signal.signal(_signal.SIGINT, _stop_early)
        if hasattr(_signal, "SIGBREAK"):  # CTRL_BREAK in a Windows console
            _signal.signal(_signal.SIGBREAK, _stop_early)
        if hasattr(_signal, "SIGHUP"):
            _signal.signal(_signal.SIGHUP, _hup_early)
        if hasattr(_signal, "pthread_sigmask"):
            # `daemon start` spawns us with these blocked (see _control._spawn):
            # what arrived meanwhile is delivered now, to the handlers above.
            wanted = {_signal.SIGTERM, _signal.SIGINT}
            if hasattr(_signal, "SIGHUP"):
                wanted.add(_signal.SIGHUP)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, wanted)
        return main()
    except KeyboardInterrupt:  # Python's own handler, before ours was in
        return 0


if __name__ == "__main__":
    code = _run()
    # Everything is cleaned up and flushed by now (serve's finally); skipping
    # the interpreter's teardown of Trio, anyio and friends saves ~20 ms of
    # every `daemon stop`.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
