"""State paths and who may use them.

POSIX: ``~/.bicameral``, created 0700, and the checks of SPEC §4 are about
mode bits and owners. Windows has ACLs, not mode bits: the state directory
is ``%LOCALAPPDATA%\\bicameral`` (per user, not roamed), created with an ACL
that grants this user alone full control and inherits nothing from its
parent (``icacls``, a stock Windows tool, so no pywin32 is needed).
"""

from __future__ import annotations

import os
import sys
from pathlib import PurePath, PureWindowsPath

from bicameral.platform._os import CURRENT, Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "checks_mode_bits",
    "current_uid",
    "default_home",
    "restrict_to_user",
    "short_temp_root",
    "user_acl_command",
]

HOME_NAME = ".bicameral"
WINDOWS_HOME_NAME = "bicameral"


def default_home(
    platform: Platform = CURRENT,
    *,
    environ: Mapping[str, str] | None = None,
    user_home: str | os.PathLike[str] | None = None,
) -> PurePath:
    """The default state directory: ``~/.bicameral``, or ``%LOCALAPPDATA%\\bicameral``.

    On Windows an unset or relative ``LOCALAPPDATA`` falls back to
    ``<home>\\AppData\\Local``, where Windows puts it.
    """
    env = os.environ if environ is None else environ
    home = os.fspath(user_home) if user_home is not None else os.path.expanduser("~")
    if platform.windows:
        local = env.get("LOCALAPPDATA") or ""
        base = PureWindowsPath(local)
        if not local or not base.is_absolute():
            base = PureWindowsPath(home, "AppData", "Local")
        return base / WINDOWS_HOME_NAME
    return PurePath(home) / HOME_NAME


def checks_mode_bits(platform: Platform = CURRENT) -> bool:
    """Whether owner and mode bits decide who can use a file (not on Windows)."""
    return platform.posix


def current_uid() -> int | None:
    """This process's effective uid; ``None`` on Windows, which has SIDs."""
    if sys.platform == "win32":
        return None
    return os.geteuid()


def user_acl_command(path: str | os.PathLike[str], user: str) -> list[str]:
    """The ``icacls`` command that leaves ``user`` alone with full control of ``path``.

    ``/inheritance:r`` drops the entries inherited from the parent (Users,
    Authenticated Users...), ``/grant:r`` replaces any explicit grant of
    ``user`` by full control, inherited by files and subdirectories
    (``(OI)(CI)F``). ``/Q`` keeps it quiet; ``/C`` is not used: a failure
    must be reported.
    """
    return ["icacls", os.fspath(path), "/inheritance:r", "/grant:r", f"{user}:(OI)(CI)F", "/Q"]


def _windows_user(environ: Mapping[str, str]) -> str:
    user = environ.get("USERNAME") or ""
    domain = environ.get("USERDOMAIN") or ""
    if not user:
        raise OSError("cannot restrict access: USERNAME is not set")
    return f"{domain}\\{user}" if domain else user


def restrict_to_user(path: str | os.PathLike[str], platform: Platform = CURRENT) -> None:
    """Make ``path`` (a directory just created) usable by this user only.

    POSIX: mode 0700 (``makedirs``' mode is subject to the umask). Windows:
    the ACL of :func:`user_acl_command`. Raises ``OSError`` when that fails.
    """
    if platform.posix:
        os.chmod(path, 0o700)
        return
    import subprocess

    command = user_acl_command(path, _windows_user(os.environ))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise OSError(f"icacls could not restrict {path} to you: {why[-1] if why else '?'}")


def short_temp_root(platform: Platform = CURRENT) -> str | None:
    """Where a throwaway state dir goes: ``/tmp`` on POSIX, whose paths are short enough
    for a Unix socket (a per-user ``$TMPDIR`` on macOS is not); Windows' own temp dir
    (``None``: `tempfile`'s default), where there are no Unix sockets."""
    return "/tmp" if platform.posix else None
