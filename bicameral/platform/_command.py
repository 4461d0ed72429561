"""Resolving a server's command the way the OS will run it.

POSIX runs ``argv[0]`` through ``execvp``: a name is looked up on ``PATH``,
and scripts with a ``#!`` line run as programs. Nothing to do here.

Windows' ``CreateProcess`` looks a bare name up with ``.exe`` only, so
``npx`` (installed as ``npx.cmd``, beside ``npx.ps1`` and a ``npx`` shell
script) fails with ENOENT, the commonest reason an MCP server will not start
there. So a name is resolved here as ``cmd.exe`` resolves it: each ``PATH``
directory in turn, each ``PATHEXT`` extension in turn. A batch file
(``.cmd``/``.bat``) is run by ``cmd.exe``, whose parsing of the command line
differs from every other program's; an argument with ``"``, ``%``, ``!`` or a
line break cannot be passed to one safely (the "BatBadBut" class of
injection), so that is refused with a message instead of being
misinterpreted. PowerShell scripts (``.ps1``) are not programs
``CreateProcess`` can run: refused, saying which command runs one.

Pure functions of their arguments: the tests run the Windows rules on Linux
with a fake file system (``is_file``).
"""

from __future__ import annotations

import ntpath
import os

from bicameral.platform._os import CURRENT, Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["CommandError", "resolve_command"]

DEFAULT_PATHEXT = ".COM;.EXE;.BAT;.CMD"
_BATCH = (".cmd", ".bat")
#: What ``cmd.exe`` would expand or split in a batch file's argument.
_BATCH_UNSAFE = frozenset('"%!\r\n')


class CommandError(Exception):
    """The command cannot be run as given; the message says what to write instead."""


def resolve_command(
    argv: Sequence[str],
    *,
    platform: Platform = CURRENT,
    environ: Mapping[str, str] | None = None,
    is_file: Callable[[str], bool] = os.path.isfile,
) -> list[str]:
    """``argv`` with its program resolved as ``platform`` resolves it.

    POSIX: unchanged. Windows: a bare name (``npx``) becomes the full path of
    the first ``PATH`` match over ``PATHEXT`` (``C:\\...\\npx.cmd``); a
    path with an extension is kept; a path without one gets the extensions
    tried. Raises :class:`CommandError` for a ``.ps1`` script, a batch file
    with an argument ``cmd.exe`` would misread, and a name found nowhere.
    """
    if not argv:
        raise CommandError("the command is empty")
    args = list(argv)
    if platform.posix:
        return args
    env = os.environ if environ is None else environ
    program = args[0]
    resolved = _find_windows(program, env, is_file)
    if resolved is None:
        ps1 = _find_windows(program + ".ps1", env, is_file) if not _ext(program) else None
        if ps1 is not None:
            raise CommandError(_ps1_hint(program, ps1))
        raise CommandError(
            f"{program!r} is not found on PATH (tried the extensions of PATHEXT: "
            f"{_pathext(env)}); install it, or give its full path"
        )
    if _ext(resolved) == ".ps1":
        raise CommandError(_ps1_hint(program, resolved))
    if _ext(resolved) in _BATCH:
        for arg in args[1:]:
            if _BATCH_UNSAFE.intersection(arg):
                raise CommandError(
                    f"{program!r} is a batch file ({ntpath.basename(resolved)}), run by cmd.exe, "
                    f'which would misread the argument {arg!r} (it has " % ! or a line break); '
                    "run the program it wraps directly"
                )
    return [resolved, *args[1:]]


def _ext(name: str) -> str:
    return ntpath.splitext(name)[1].lower()


def _pathext(env: Mapping[str, str]) -> str:
    return _get(env, "PATHEXT") or DEFAULT_PATHEXT


def _get(env: Mapping[str, str], key: str) -> str | None:
    """``env[key]``, the name matched without regard to case (``Path``), as Windows does."""
    if key in env:
        return env[key]
    return next((v for k, v in env.items() if k.upper() == key), None)


def _ps1_hint(program: str, script: str) -> str:
    return (
        f"{program!r} is a PowerShell script ({script}), which Windows cannot start as a "
        'program; use command = "powershell" with args = ["-NoProfile", "-File", '
        f'"{script}", ...], or the .cmd/.exe of the same tool'
    )


def _candidates(name: str, env: Mapping[str, str]) -> list[str]:
    """``name`` itself when it has an extension, else with each of PATHEXT's."""
    if _ext(name):
        return [name]
    exts = [e for e in _pathext(env).split(";") if e.startswith(".")]
    return [name + e.lower() for e in exts]


def _find_windows(
    program: str, env: Mapping[str, str], is_file: Callable[[str], bool]
) -> str | None:
    if ntpath.dirname(program) or ntpath.isabs(program):
        # A path: the extensions are tried, PATH is not.
        return next((c for c in _candidates(program, env) if is_file(c)), None)
    for entry in (_get(env, "PATH") or "").split(";"):
        directory = entry.strip().strip('"')
        if not directory:
            continue
        for candidate in _candidates(program, env):
            full = ntpath.join(directory, candidate)
            if is_file(full):
                return full
    return None
