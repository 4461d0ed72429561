"""No descendant outlives the daemon, whatever kills it (SPEC §6, Linux).

Process groups stop a server's tree on every graceful path, and the direct
child gets a parent-death signal; what neither reaches is a grandchild when
the daemon is killed with SIGKILL (the group is never signalled), and a
helper that left the group with ``setsid()``. So:

- the daemon *tags* everything it starts: ``BICAMERAL_DAEMON=<pid>:<start
  ticks>:<state dir>`` in its environment, inherited by every server and
  their descendants (few programs scrub their environment);
- a small *reaper* process (`_reaper_main`) waits for the daemon to exit,
  noticed as end of file on a pipe whose write end only the daemon holds,
  and then ends every process of this user still carrying the tag;
- the reaper of the next daemon of the same state dir first ends what a
  predecessor's tag marks, should that predecessor and its reaper both have
  been killed.

Why not a cgroup: cgroup v2 with ``cgroup.kill`` needs a delegated subtree,
which a per-user daemon started from a shell rarely has (and containers
often lack); the tag works wherever ``/proc`` does. Why not a subreaper:
orphans are reparented to the subreaper only while it lives, and SIGKILL of
the daemon is exactly the case to cover. macOS has no ``/proc`` and no
reaper: there, process groups and the graceful stop are what holds.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["TAG_ENV", "start_reaper"]

logger = logging.getLogger("bicameral.daemon")

TAG_ENV = "BICAMERAL_DAEMON"
_SCRIPT = Path(__file__).with_name("_reaper_main.py")


def _start_ticks() -> str:
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


def start_reaper(home: Path) -> int | None:
    """Tag this daemon's future children and spawn its reaper; the reaper's pid.

    Returns None (and tags nothing) where there is no ``/proc``. The pipe's
    write end stays open, close-on-exec, for the life of this process.
    """
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        return None
    tag = f"{os.getpid()}:{_start_ticks()}:{home}"
    read_end, write_end = os.pipe()  # both close-on-exec: no server inherits them
    env = {k: v for k, v in os.environ.items() if k != TAG_ENV}
    try:
        os.set_inheritable(read_end, True)
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-S", "-I", str(_SCRIPT), str(home), tag, str(read_end)],
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


_KEEP: list[int] = []
