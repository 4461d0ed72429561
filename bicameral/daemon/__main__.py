"""``python -m bicameral.daemon serve [options]``: the daemon in the foreground.

The same program as ``bicameral daemon serve``, without the CLI's Typer
import, so ``daemon start`` spawns exactly this (with the hidden
``--detached``, which sends the log to ``daemon.log`` instead of stderr).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
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
    serve.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bicameral.daemon._errors import DaemonError
    from bicameral.daemon._paths import resolve_paths
    from bicameral.daemon._platform import default_transport

    try:
        paths = resolve_paths(
            args.serve_home or args.home,
            descriptor=args.descriptor,
            socket=args.socket,
            config=args.config,
        )
    except DaemonError as exc:  # pragma: no cover - resolve_paths is pure
        print(f"bicameral daemon: error: {exc}", file=sys.stderr)
        return 1
    from bicameral.daemon._serve import ServeOptions, serve

    return serve(
        ServeOptions(paths, transport=args.transport or default_transport(), detached=args.detached)
    )


if __name__ == "__main__":
    sys.exit(main())
