"""The CLI's one error boundary: a user's error becomes one line and an exit code.

Commands raise; :func:`exit_code` (called once, by ``bicameral.cli.main``,
around the fast path and Typer alike) prints and picks the exit code:

- `CommandFailed`: a command's own failure, with its exit code and, where
  the command prints JSON, its JSON object (``{"status": "failed", ...,
  "error"}``) on stdout;
- `bicameral.daemon.DaemonError` (`ConfigError` included): a problem the
  user can fix, whose message is already one line: exit 1. A
  `StartError` names the log to read.

A command that prints JSON wraps the calls that may fail in
:func:`failing`, which turns their errors into a `CommandFailed` carrying
that JSON object. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["CommandFailed", "error", "exit_code", "failed", "failing"]


def error(message: str) -> None:
    """One diagnostic line on stderr."""
    sys.stderr.write(f"bicameral: error: {message}\n")
    sys.stderr.flush()


class CommandFailed(Exception):
    """A command failed: `message` for stderr, `code` to exit with, `result` for stdout."""

    def __init__(self, message: str, code: int = 1, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.result = result


def _wants_json(flag: bool) -> bool:
    from bicameral.cli._fast import wants_json

    return wants_json(flag)


def failed(
    message: str,
    *,
    code: int = 1,
    json: bool | None = None,
    why: str | None = None,
    **fields: Any,
) -> CommandFailed:
    """A failure to raise: with ``--json`` (or stdout not a terminal) its JSON object too.

    `json` is the command's ``--json`` flag (``None``: the command prints no
    JSON). The object is ``{"status": "failed", **fields, "error": why or
    message}``; `fields` may replace ``status``.
    """
    result = None
    if json is not None and _wants_json(json):
        result = {"status": "failed", **fields, "error": why or message}
    return CommandFailed(message, code, result)


def _describe(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """A user's error as its line, and what its JSON object says of it."""
    from bicameral.daemon import StartError

    if isinstance(exc, StartError):
        message = f"daemon failed to start: {exc.reason} (log: {exc.log_path})"
        return message, {"error": exc.reason, "log_path": exc.log_path}
    return str(exc), {"error": str(exc)}


@contextlib.contextmanager
def failing(json: bool | None, *, code: int = 1, prefix: str = "", **fields: Any) -> Iterator[None]:
    """Turn a `DaemonError` inside into a `CommandFailed`: exit `code`, the command's JSON.

    `json` is the command's ``--json`` flag (``None``: it prints no JSON);
    `fields` go into the JSON object (``name``, ``log_path``...); `prefix`
    goes before the message on stderr.
    """
    from bicameral.daemon import DaemonError

    try:
        yield
    except DaemonError as exc:
        message, said = _describe(exc)
        result = None
        if json is not None and _wants_json(json):
            result = {"status": "failed", **fields, **said}
        raise CommandFailed(prefix + message, code, result) from None


def exit_code(exc: BaseException) -> int | None:
    """Report a user's error (stderr, and its JSON on stdout); its exit code, ``None`` if a bug."""
    if isinstance(exc, CommandFailed):
        if exc.result is not None:
            from bicameral.cli._fast import emit

            emit(exc.result, True, "")
        error(exc.message)
        return exc.code
    from bicameral.daemon import DaemonError

    if isinstance(exc, DaemonError):
        error(_describe(exc)[0])
        return 1
    return None
