"""``python -m bicameral.daemon serve [options]``: the daemon in the foreground.

The same program as ``bicameral daemon serve``, without the CLI's Typer
import, so ``daemon start`` spawns exactly this (with the hidden
``--detached``, which sends the log to ``daemon.log`` instead of stderr).

The command line ``start`` generates is parsed by hand (:func:`_quick_parse`):
``argparse`` builds a help formatter, which imports ``shutil`` and ``locale``,
a few milliseconds of every ``daemon start``. Anything else (``--help``, an
error) goes through ``argparse``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["main"]

_VALUE_OPTIONS = (
    "--home",
    "--socket",
    "--descriptor",
    "--config",
    "--transport",
    "--log-format",
    "--http",
)


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bicameral.daemon",
        description="Run the bicameral daemon in the foreground.",
    )
    parser.add_argument("--home", help="state directory (default: $BICAMERAL_HOME or ~/.bicameral)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--home", dest="serve_home", help=argparse.SUPPRESS)
    serve.add_argument("--socket", help="Unix socket path (default: <home>/daemon.sock)")
    serve.add_argument("--descriptor", help="descriptor path (default: <home>/daemon.json)")
    serve.add_argument("--config", help="config file (default: <home>/config.toml)")
    serve.add_argument("--transport", choices=("unix", "tcp"), default=None)
    serve.add_argument("--log-format", choices=("text", "json"), default=None)
    serve.add_argument("--http", metavar="HOST:PORT", help="serve MCP clients over HTTP here")
    serve.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    return parser


def _quick_parse(argv: list[str]) -> dict[str, str | bool] | None:
    """``serve`` followed by ``--name value`` / ``--detached`` only; else ``None``."""
    if not argv or argv[0] != "serve":
        return None
    options: dict[str, str | bool] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--detached":
            options["detached"] = True
            i += 1
        elif arg in _VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1]:
            options[arg[2:]] = argv[i + 1]
            i += 2
        else:
            return None
    if options.get("transport", "unix") not in ("unix", "tcp"):
        return None
    if options.get("log-format", "text") not in ("text", "json"):
        return None
    return options


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = _quick_parse(args)
    if quick is None:
        parsed = vars(_parser().parse_args(args))
        parsed["home"] = parsed.pop("serve_home") or parsed.get("home")
        quick = {k: v for k, v in parsed.items() if v not in (None, False)}

    def text(name: str) -> str | None:
        value = quick.get(name)
        return value if isinstance(value, str) else None

    from bicameral.daemon._paths import resolve_paths
    from bicameral.daemon._serve import ServeOptions, serve
    from bicameral.daemon._signals import remember_early_reloads, remember_early_stops
    from bicameral.platform import default_transport

    remember_early_reloads(_EARLY_HUPS)
    remember_early_stops(_EARLY_STOPS)  # serve acts on them first thing

    paths = resolve_paths(
        text("home"), descriptor=text("descriptor"), socket=text("socket"), config=text("config")
    )
    options = ServeOptions(
        paths,
        transport=text("transport") or default_transport(),
        detached=bool(quick.get("detached")),
        log_format=text("log-format") or text("log_format"),
        http=text("http"),
    )
    return serve(options)


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
