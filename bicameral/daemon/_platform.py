"""Platform decisions, as small pure functions of ``sys.platform``.

Every place where Linux, macOS and Windows differ asks one of these functions
instead of testing ``sys.platform`` inline. Each takes the platform as an
argument (defaulting to the running one), so the tests exercise every branch
on any machine: the Windows path of SPEC §6 is pinned on Linux CI even though
it only runs for real on Windows.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "default_transport",
    "detach_popen_kwargs",
    "graceful_signal_names",
    "is_windows",
    "socket_path_limit",
    "stop_uses_rpc",
]


def is_windows(platform: str = sys.platform) -> bool:
    """Whether ``platform`` (a ``sys.platform`` value) is Windows."""
    return platform == "win32"


def default_transport(platform: str = sys.platform) -> str:
    """``"unix"`` where CPython has AF_UNIX sockets, ``"tcp"`` on Windows.

    CPython on Windows has no ``socket.AF_UNIX``, so the daemon listens on
    loopback TCP there with a per-daemon token (SPEC §6).
    """
    return "tcp" if is_windows(platform) else "unix"


def socket_path_limit(platform: str = sys.platform) -> int | None:
    """Longest AF_UNIX path in bytes, or ``None`` where there is no AF_UNIX.

    ``sockaddr_un.sun_path`` is 108 bytes on Linux and 104 on the BSDs and
    macOS, one of which holds the terminating NUL.
    """
    if is_windows(platform):
        return None
    if platform.startswith("linux"):
        return 107
    return 103


def detach_popen_kwargs(platform: str = sys.platform) -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen`` that detach the daemon.

    POSIX: a new session, so the terminal's SIGINT/SIGHUP never reach it and it
    survives the shell. Windows: no console and a new process group
    (``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP``); the numeric values are
    spelled out because the ``subprocess`` constants only exist on Windows.
    """
    if is_windows(platform):
        detached_process = 0x00000008
        create_new_process_group = 0x00000200
        return {"creationflags": detached_process | create_new_process_group}
    return {"start_new_session": True}


def stop_uses_rpc(platform: str = sys.platform) -> bool:
    """Whether ``stop`` asks the daemon to stop over RPC instead of signalling it.

    On Windows CTRL_BREAK only reaches a process that shares the sender's
    console, which a detached daemon does not, so ``stop`` calls
    ``system.shutdown`` first and falls back to TerminateProcess (SPEC §6).
    """
    return is_windows(platform)


def graceful_signal_names(platform: str = sys.platform) -> tuple[str, ...]:
    """Names of the signals that ask ``serve`` for a graceful stop.

    SIGBREAK (CTRL_BREAK) exists only on Windows; the handler is installed
    there too, for a daemon run in the foreground of a console.
    """
    if is_windows(platform):
        return ("SIGTERM", "SIGINT", "SIGBREAK")
    return ("SIGTERM", "SIGINT")
