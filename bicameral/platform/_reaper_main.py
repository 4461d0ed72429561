"""The reaper: a tiny process that ends whatever a daemon left behind.

Run by `bicameral.platform._reaper.start_reaper` as ``python [-S] -I
_reaper_main.py HOME TAG FD``, spawned by the daemon once it holds its lock.
On Linux a fresh interpreter without ``site`` (a few milliseconds, a
command line unlike the daemon's); on macOS with ``site``, for psutil.

1. At once, it ends the processes a *previous* daemon of this state dir left
   behind (it was killed with SIGKILL, or crashed): every process of this
   user whose environment carries ``BICAMERAL_DAEMON=<pid>:<start>:HOME`` for
   a daemon of the same HOME that is no longer alive.
2. Then it waits for the daemon to exit, without polling: end of file on FD,
   the read end of a pipe only the daemon holds the write end of (the
   kernel closes it however the daemon exits, SIGKILL included); on macOS a
   kqueue waits for that and for ``NOTE_EXIT`` on the daemon's pid.
3. Then it ends every process still carrying the daemon's own TAG: servers'
   descendants that left their process group with ``setsid()``, and, after a
   SIGKILL of the daemon, the whole tree of every server.

"Ends" is SIGTERM, up to one second of grace, then SIGKILL, repeated until
nothing tagged is left (a process may fork while it is being ended). A
process is only signalled when it runs as this user and its environment
carries the exact tag: proof that the daemon (or its predecessor) started
it, not a guess from a pid. Processes are listed from ``/proc`` on Linux and
by psutil on macOS. POSIX only: Windows' Job Objects need no reaper.
"""

import contextlib
import os
import signal
import sys
import time

assert sys.platform != "win32", "no reaper on Windows: Job Objects end the trees"

ENV = "BICAMERAL_DAEMON"


def _start_of(pid: int) -> "bytes | None":
    """The start marker of a live pid as the tag records it; None if gone or a zombie."""
    if sys.platform == "linux":
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] == b"Z":
            return None
        return fields[19]
    import psutil  # type: ignore[import-untyped, unused-ignore]

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{proc.create_time():.6f}".encode()
    except psutil.Error:
        return None


def _tags() -> "list[tuple[int, bytes]]":
    """(pid, tag) of every process of this user whose environment has one."""
    uid = os.getuid()
    me = os.getpid()
    found = []
    if sys.platform == "linux":
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
                if item.startswith(ENV.encode() + b"="):
                    found.append((int(entry), item[len(ENV) + 1 :]))
                    break
        return found
    import psutil  # type: ignore[import-untyped, unused-ignore]

    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.uids().real != uid:
                continue
            tag = proc.environ().get(ENV)
        except psutil.Error:
            continue
        if tag is not None:
            found.append((proc.pid, os.fsencode(tag)))
    return found


def _tagged(own: "bytes | None", home: bytes) -> "list[int]":
    """Pids of this user's processes whose environment carries a tag for `home`.

    With `own`, exactly that tag; without, a tag of `home` whose daemon is
    dead (a predecessor's).
    """
    found = []
    for pid, tag in _tags():
        if own is not None:
            if tag == own:
                found.append(pid)
            continue
        daemon, _, rest = tag.partition(b":")
        start, _, where = rest.partition(b":")
        if where == home and not _daemon_alive(daemon, start):
            found.append(pid)
    return found


def _daemon_alive(pid: bytes, start: bytes) -> bool:
    try:
        return _start_of(int(pid)) == start
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
            if not [p for p in pids if _start_of(p) is not None]:
                break
            time.sleep(0.02)
        for pid in find():  # type: ignore[operator]
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return ended


def _wait_for_daemon(fd: int, daemon: int) -> None:
    """Return once the daemon has exited (see the module docstring)."""
    if sys.platform != "linux":
        import select

        kq = select.kqueue()
        watch = [select.kevent(fd, filter=select.KQ_FILTER_READ, flags=select.KQ_EV_ADD)]
        with contextlib.suppress(OSError):  # gone already: the pipe says so too
            kq.control(
                [
                    select.kevent(
                        daemon,
                        filter=select.KQ_FILTER_PROC,
                        flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                        fflags=select.KQ_NOTE_EXIT,
                    )
                ],
                0,
                0,
            )
        kq.control(watch, 0, 0)
        while True:
            for event in kq.control(None, 2, None):
                if event.filter == select.KQ_FILTER_PROC or event.flags & select.KQ_EV_EOF:
                    return
            with contextlib.suppress(OSError):
                if not os.read(fd, 4096):
                    return
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except InterruptedError:
            continue
        except OSError:
            return


def main() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    home, tag, fd = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), int(sys.argv[3])
    _end(lambda: _tagged(None, home))
    _wait_for_daemon(fd, int(tag.partition(b":")[0]))
    _end(lambda: _tagged(tag, home))


if __name__ == "__main__":
    main()
