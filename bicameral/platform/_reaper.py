"""No descendant outlives the daemon, whatever kills it (SPEC §6, POSIX).

Process groups stop a server's tree on every graceful path, and on Linux
the direct child gets a parent-death signal; what neither reaches is a
grandchild when the daemon is killed with SIGKILL (the group is never
signalled), and a helper that left the group with ``setsid()``. So:

- the daemon *tags* everything it starts: ``BICAMERAL_DAEMON=<pid>:<start>:
  <state dir>`` in its environment, inherited by every server and their
  descendants (few programs scrub their environment);
- a small *reaper* process (`_reaper_main`) waits for the daemon to exit and
  then ends every process of this user still carrying the tag: on Linux it
  notices the exit as end of file on a pipe whose write end only the daemon
  holds, on macOS as a kqueue ``NOTE_EXIT`` on the daemon's pid (and the
  pipe);
- the reaper of the next daemon of the same state dir first ends what a
  predecessor's tag marks, should that predecessor and its reaper both have
  been killed.

Processes are found through ``/proc`` on Linux and psutil on macOS (its
process list and each process's environment). Windows needs no reaper:
every server's tree is in a Job Object that dies with the daemon.

Why not a cgroup: cgroup v2 with ``cgroup.kill`` needs a delegated subtree,
which a per-user daemon started from a shell rarely has (and containers
often lack). Why not a subreaper: orphans are reparented to the subreaper
only while it lives, and SIGKILL of the daemon is exactly the case to cover.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from bicameral.platform._os import CURRENT, Platform

__all__ = ["REAPER_SCRIPT", "TAG_ENV", "needs_reaper", "start_reaper"]

logger = logging.getLogger("bicameral.daemon")

TAG_ENV = "BICAMERAL_DAEMON"
REAPER_SCRIPT = Path(__file__).with_name("_reaper_main.py")
_KEEP: list[int] = []


def needs_reaper(platform: Platform = CURRENT) -> bool:
    """Whether a killed daemon's descendants need a reaper (not with Job Objects)."""
    return platform.posix


def reaper_argv(
    python: str, home: str, tag: str, fd: int, platform: Platform = CURRENT
) -> list[str]:
    """The reaper's command line: ``-S`` (no ``site``: milliseconds, nothing third-party)
    where it reads ``/proc``; on macOS it needs psutil from ``site-packages``.
    """
    flags = ["-S", "-I"] if platform.linux else ["-I"]
    return [python, *flags, str(REAPER_SCRIPT), home, tag, str(fd)]


def _own_start() -> str:
    """This process's start, as the reaper reads it back (`_reaper_main._start_of`)."""
    if sys.platform == "linux":
        with open(f"/proc/{os.getpid()}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2 :].split()[19].decode()
    import psutil  # type: ignore[import-untyped, unused-ignore]

    return f"{psutil.Process().create_time():.6f}"


def start_reaper(home: Path) -> int | None:
    """Tag this daemon's future children and spawn its reaper; the reaper's pid.

    Returns ``None`` (and tags nothing) on Windows, where Job Objects do the
    work, and when the reaper cannot start (logged). The pipe's write end
    stays open, close-on-exec, for the life of this process.
    """
    if sys.platform == "win32" or not needs_reaper():
        return None
    try:
        tag = f"{os.getpid()}:{_own_start()}:{home}"
    except (OSError, ImportError) as exc:
        logger.warning("cannot start the reaper (%s): descendants may outlive a killed daemon", exc)
        return None
    read_end, write_end = os.pipe()  # both close-on-exec: no server inherits them
    env = {k: v for k, v in os.environ.items() if k != TAG_ENV}
    argv = reaper_argv(sys.executable, str(home), tag, read_end)
    try:
        os.set_inheritable(read_end, True)
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                # Not the daemon's stderr: a foreground daemon's caller reading
                # it to end of file must not wait for the reaper too.
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
    except OSError as exc:
        os.close(write_end)
        logger.warning("cannot start the reaper (%s): descendants may outlive a killed daemon", exc)
        return None
    finally:
        os.close(read_end)
    os.environ[TAG_ENV] = tag
    # Deliberately never closed: the kernel closes it when this process ends.
    _KEEP.append(write_end)
    return pid
