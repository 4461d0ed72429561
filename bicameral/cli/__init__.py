"""The ``bicameral`` command line.

The CLI is thin on purpose: it parses, calls :mod:`bicameral.daemon` or
:mod:`bicameral.mcp`, and prints. Typer is imported only when the command is
not one of the fast paths, because ``import typer`` alone costs most of the
``daemon status`` latency budget.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bicameral`` console script.

    Ctrl-C anywhere, imports included, exits 130 (128 + SIGINT, as shells
    report it) without a traceback: the commands leave consistent state when
    interrupted, so there is nothing for the user to read. A user's error
    from any command is one line on stderr, here and only here
    (:mod:`bicameral.cli._errors`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from bicameral.cli._fast import try_fast

        code = try_fast(args)
        if code is not None:
            raise SystemExit(code)
        from bicameral.cli._app import run

        run(args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        from bicameral.cli._errors import exit_code

        code = exit_code(exc)
        if code is None:
            raise
        raise SystemExit(code) from None
