"""The reaper: a tiny process that ends whatever a daemon left behind.

Run by `bicameral.daemon._reaper.start_reaper` as ``python -S -I
_reaper_main.py HOME TAG FD``: a fresh interpreter without ``site`` (a few
milliseconds, no third-party imports, and a command line that does not look
like the daemon's), spawned by the daemon once it holds its lock.

1. At once, it ends the processes a *previous* daemon of this state dir left
   behind (it was killed with SIGKILL, or crashed): every process of this
   user whose environment carries ``BICAMERAL_DAEMON=<pid>:<start>:HOME`` for
   a daemon of the same HOME that is no longer alive.
2. Then it waits for end of file on FD, the read end of a pipe only the
   daemon holds the write end of. The kernel closes it however the daemon
   exits, SIGKILL included.
3. Then it ends every process still carrying the daemon's own TAG: servers'
   descendants that left their process group with ``setsid()``, and, after a
   SIGKILL of the daemon, the whole tree of every server.

"Ends" is SIGTERM, up to one second of grace, then SIGKILL, repeated until
nothing tagged is left (a process may fork while it is being ended). A
process is only signalled when it runs as this user and its environment
carries the exact tag: proof that the daemon (or its predecessor) started
it, not a guess from a pid. Linux only (it reads ``/proc``).

Everything here is the standard library, imported without ``site``.
"""

import contextlib
import os
import signal
import sys
import time

ENV = "BICAMERAL_DAEMON"


def _tagged(own: bytes | None, home: bytes) -> list[int]:
    """Pids of this user's processes whose environment carries a tag for `home`.

    With `own`, exactly that tag; without, a tag of `home` whose daemon is
    dead (a predecessor's).
    """
    uid = os.getuid()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if not item.startswith(ENV.encode() + b"="):
                continue
            tag = item[len(ENV) + 1 :]
            if own is not None:
                if tag == own:
                    found.append(int(entry))
            else:
                pid, _, rest = tag.partition(b":")
                start, _, where = rest.partition(b":")
                if where == home and not _daemon_alive(pid, start):
                    found.append(int(entry))
            break
    return found


def _start_ticks(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return fields[19]


def _daemon_alive(pid: bytes, start: bytes) -> bool:
    try:
        return _start_ticks(int(pid)) == start
    except ValueError:
        return False


def _end(find: "object") -> int:
    """SIGTERM what `find()` returns, a second of grace, SIGKILL; until none is left."""
    ended = 0
    for _ in range(20):
        pids = find()  # type: ignore[operator]
        if not pids:
            return ended
        ended += len(pids)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if not [p for p in pids if _start_ticks(p) is not None]:
                break
            time.sleep(0.02)
        for pid in find():  # type: ignore[operator]
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return ended


def main() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    home, tag, fd = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), int(sys.argv[3])
    _end(lambda: _tagged(None, home))
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    _end(lambda: _tagged(tag, home))


if __name__ == "__main__":
    main()
