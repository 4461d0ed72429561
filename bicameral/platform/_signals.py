"""Detaching, stopping and the signals that mean "stop".

POSIX: a detached daemon leads a new session; ``stop`` sends SIGTERM, then
SIGKILL after the grace. Windows: a detached daemon has no console and its
own process group (``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP``); since
CTRL_BREAK only reaches a process sharing the sender's console, ``stop``
asks over RPC (``system.shutdown``) and falls back to TerminateProcess.
A daemon run in a console's foreground still turns CTRL_BREAK (SIGBREAK)
into a graceful stop.
"""

from __future__ import annotations

import contextlib
import os
import sys

from bicameral.platform._os import CURRENT, Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CREATE_NEW_PROCESS_GROUP",
    "DETACHED_PROCESS",
    "detach_popen_kwargs",
    "graceful_signal_names",
    "kill_process",
    "reload_signal_names",
    "stop_uses_rpc",
    "terminate_group",
    "terminate_process",
]

# The subprocess module defines these only on Windows: spelled out here so
# the decision is the same value (and testable) everywhere.
DETACHED_PROCESS = 0x00000008
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_SUSPENDED = 0x00000004


def detach_popen_kwargs(platform: Platform = CURRENT) -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen`` that detach the daemon."""
    if platform.windows:
        return {"creationflags": DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def stop_uses_rpc(platform: Platform = CURRENT) -> bool:
    """Whether ``stop`` asks the daemon over RPC first instead of signalling it."""
    return platform.windows


def graceful_signal_names(platform: Platform = CURRENT) -> tuple[str, ...]:
    """Signals that ask ``serve`` for a graceful stop (a second one: at once)."""
    if platform.windows:
        return ("SIGTERM", "SIGINT", "SIGBREAK")
    return ("SIGTERM", "SIGINT")


def reload_signal_names(platform: Platform = CURRENT) -> tuple[str, ...]:
    """Signals that reload the configuration: SIGHUP, which Windows lacks."""
    return () if platform.windows else ("SIGHUP",)


def terminate_process(pid: int) -> None:
    """Ask ``pid`` to exit: SIGTERM; on Windows, which has no such request, TerminateProcess.

    A process that is already gone is not an error.
    """
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def kill_process(pid: int) -> None:
    """End ``pid`` now: SIGKILL; TerminateProcess on Windows. Gone already: fine."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        if sys.platform == "win32":
            os.kill(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGKILL)


def terminate_group(leader: int) -> None:
    """Ask every process of the group ``leader`` leads to exit.

    POSIX: SIGTERM to the process group. Windows: CTRL_BREAK to the process
    group, which reaches it only when it shares our console (a daemon in a
    console's foreground); a detached daemon's servers get their cue from
    their stdin closing, and their Job Object ends whatever is left.
    """
    import signal

    with contextlib.suppress(OSError):
        if sys.platform == "win32":
            os.kill(leader, signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(leader, signal.SIGTERM)
