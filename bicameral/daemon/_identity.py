"""Is the process a descriptor names still the daemon that wrote it?

A pid alone proves nothing: the daemon may have died and its pid been reused
by anything, or it may have exited and be a zombie that nobody has reaped yet
(``os.kill(pid, 0)`` succeeds on a zombie, which is why the design bicameral
descends from waited out its full 10 s grace on every stop). So identity is
the triple (pid, start time, uid), and a zombie counts as dead.

``process_start_time`` is the creation time as the OS reports it, in seconds
since the epoch. On Linux it is read from ``/proc`` directly (boot time plus
the ``starttime`` clock ticks of ``/proc/<pid>/stat``, the same arithmetic as
``psutil.Process.create_time()``), because the CLI's fast path must not pay
for importing psutil; elsewhere psutil is imported lazily. Two readings of
the same process agree within clock-tick rounding, which is the tolerance.

Boot time is derived from the wall clock, so a clock *step* (NTP's first
sync after boot, someone running ``date -s``) moves every later reading of
the daemon's start time by the size of the step, and a daemon started before
it would read as someone else. Where the times disagree, one more proof is
accepted: the kernel's own word (``SO_PEERCRED``) that this very pid, of our
uid, is listening on the daemon's socket in our owner-only state directory.
A reused pid cannot pass that test; the daemon that wrote the descriptor can.

:class:`ProcessHandle` pins a process while it is signalled and awaited: on
Linux it is a pidfd, so once the identity has been checked through it, a
signal can never reach a different process that reused the pid, and the exit
is awaited with ``poll`` instead of a sleep loop.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = [
    "ProcessHandle",
    "ProcessInfo",
    "identity_matches",
    "listener_of",
    "mismatch",
    "probe",
    "process_start_time",
    "reap_if_child",
    "start_times_equal",
]

_LINUX = sys.platform.startswith("linux")
_cache: dict[str, float] = {}


class ProcessInfo:
    """What the OS says about one pid right now."""

    __slots__ = ("pid", "start_time", "uid", "zombie")

    def __init__(self, pid: int, *, start_time: float, uid: int | None, zombie: bool) -> None:
        self.pid = pid
        self.start_time = start_time
        self.uid = uid
        self.zombie = zombie

    def __repr__(self) -> str:
        return (
            f"ProcessInfo(pid={self.pid}, start_time={self.start_time}, "
            f"uid={self.uid}, zombie={self.zombie})"
        )


def _clk_tck() -> float:
    if "clk_tck" not in _cache:
        _cache["clk_tck"] = float(os.sysconf("SC_CLK_TCK"))
    return _cache["clk_tck"]


def _boot_time() -> float:
    if "btime" not in _cache:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime"):
                    _cache["btime"] = float(line.split()[1])
                    break
            else:  # pragma: no cover - every Linux /proc/stat has btime
                raise OSError("no btime in /proc/stat")
    return _cache["btime"]


def tolerance() -> float:
    """How far apart two readings of one process's start time may be."""
    return 1.0 / _clk_tck() + 1e-3 if _LINUX else 0.01


def start_times_equal(a: float, b: float) -> bool:
    """Whether two start times name the same process (clock-tick rounding)."""
    return abs(a - b) <= tolerance()


def _probe_linux(pid: int) -> ProcessInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: the
    # fields we want come after its *last* closing parenthesis.
    fields = data[data.rindex(b")") + 2 :].split()
    state = fields[0]
    starttime_ticks = int(fields[19])
    start = _boot_time() + starttime_ticks / _clk_tck()
    return ProcessInfo(pid, start_time=start, uid=uid, zombie=state in (b"Z", b"X", b"x"))


def _probe_psutil(pid: int) -> ProcessInfo | None:  # pragma: no cover - not Linux
    import psutil  # type: ignore[import-untyped, unused-ignore]

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            zombie = proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
            start = proc.create_time()
            uid = None if sys.platform == "win32" else proc.uids().real
    except psutil.ZombieProcess:
        return ProcessInfo(pid, start_time=0.0, uid=None, zombie=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return ProcessInfo(pid, start_time=start, uid=uid, zombie=zombie)


def probe(pid: int) -> ProcessInfo | None:
    """The OS's view of ``pid``, or ``None`` when there is no such process."""
    if pid <= 0:
        return None
    if _LINUX:
        return _probe_linux(pid)
    return _probe_psutil(pid)  # pragma: no cover - not Linux


def process_start_time(pid: int | None = None) -> float:
    """Creation time of ``pid`` (default: this process), seconds since the epoch."""
    info = probe(os.getpid() if pid is None else pid)
    if info is None:
        raise ProcessLookupError(pid)
    return info.start_time


def _current_uid() -> int | None:
    return None if sys.platform == "win32" else os.geteuid()


def identity_matches(
    info: ProcessInfo | None, start_time: float, socket_path: str | None = None
) -> bool:
    """Whether ``info`` is a live (non-zombie) process of ours started at ``start_time``.

    With ``socket_path`` (the daemon's Unix socket), a process whose start
    time disagrees still matches if the kernel says it is the one listening
    there: the start time moves with the wall clock (see the module docstring).
    """
    return mismatch(info, start_time, socket_path) is None


def mismatch(
    info: ProcessInfo | None, start_time: float, socket_path: str | None = None
) -> str | None:
    """Why ``info`` is not that process (``"is not running"``...); ``None`` when it is.

    The rule of :func:`identity_matches`, with its reason, for ``doctor``.
    """
    if info is None:
        return "is not running"
    if info.zombie:
        return "has exited (a zombie not yet reaped)"
    uid = _current_uid()
    if uid is not None and info.uid is not None and info.uid != uid:
        return "is now another user's process (the pid was reused)"
    if start_times_equal(info.start_time, start_time):
        return None
    if socket_path is not None and listener_of(socket_path) == (info.pid, uid):
        return None
    return "is now another process (the pid was reused)"


def listener_of(socket_path: str, timeout: float = 1.0) -> tuple[int, int | None] | None:
    """(pid, uid) of the process listening on the Unix socket, as the kernel attests.

    Linux only (``SO_PEERCRED`` holds the listener's credentials from the
    time it called ``listen``); ``None`` elsewhere, or when nothing listens.
    """
    if not _LINUX:
        return None
    import socket
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
    pid, uid, _gid = struct.unpack("3i", raw)
    return (pid, uid) if pid > 0 else None


def reap_if_child(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our exited child, so no zombie lingers.

    Matters for a caller that spawned the daemon itself (tests, an embedding
    application): its daemon becomes our zombie when it exits.
    """
    if sys.platform == "win32":  # pragma: no cover
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class ProcessHandle:
    """A process pinned for signalling and waiting, identity checked once.

    Use :meth:`open`, which returns ``None`` unless (pid, start time, uid) match:
    a handle is never created for a process the descriptor does not name.
    """

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self._pidfd = pidfd

    @classmethod
    def open(
        cls, pid: int, start_time: float, socket_path: str | None = None
    ) -> ProcessHandle | None:
        """Pin ``pid`` if it is the process that started at ``start_time``.

        ``socket_path``: as in :func:`identity_matches`.
        """
        pidfd: int | None = None
        if _LINUX and hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError:  # pragma: no cover - kernel without pidfd
                pidfd = None
        # Checked *after* the pidfd exists: the pidfd refers to whatever
        # process had the pid when it was opened, so a match now means every
        # later signal through it reaches that same process.
        if not identity_matches(probe(pid), start_time, socket_path):
            if pidfd is not None:
                os.close(pidfd)
            return None
        return cls(pid, pidfd)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_signal(self, signum: int) -> None:
        """Send ``signum``; a process that already exited is not an error."""
        import signal

        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:  # pragma: no cover - not Linux
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def has_exited(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to exit; ``True`` once it has.

        An exited process that is still a zombie counts as exited. With a
        pidfd this is one ``poll`` call; elsewhere psutil is asked every few
        milliseconds, backing off to 50 ms.
        """
        if self._pidfd is not None:
            import select

            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            deadline = time.monotonic() + timeout
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                if poller.poll(remaining * 1000):
                    reap_if_child(self.pid)
                    return True
                if remaining <= 0:
                    return False
        return self._wait_polling(timeout)  # pragma: no cover - not Linux

    def _wait_polling(self, timeout: float) -> bool:  # pragma: no cover - not Linux
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            info = probe(self.pid)
            if info is None or info.zombie:
                reap_if_child(self.pid)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.05)
