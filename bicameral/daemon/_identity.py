"""Is the process a descriptor names still the daemon that wrote it?

A pid alone proves nothing: the daemon may have died and its pid been reused
by anything, or it may have exited and be a zombie that nobody has reaped yet
(``os.kill(pid, 0)`` succeeds on a zombie, which is why the design bicameral
descends from waited out its full 10 s grace on every stop). So identity is
the triple (pid, start time, uid), and a zombie counts as dead.

``process_start_time`` is the creation time as the OS reports it, in seconds
since the epoch (`bicameral.platform.probe`: ``/proc`` on Linux, psutil
elsewhere). Two readings of the same process agree within clock-tick
rounding, which is the tolerance.

Boot time is derived from the wall clock, so a clock *step* (NTP's first
sync after boot, someone running ``date -s``) moves every later reading of
the daemon's start time by the size of the step, and a daemon started before
it would read as someone else. Where the times disagree, one more proof is
accepted: the kernel's own word (peer credentials) that this very pid, of
our uid, is listening on the daemon's socket in our owner-only state directory.
A reused pid cannot pass that test; the daemon that wrote the descriptor can.

:class:`ProcessHandle` pins a process while it is signalled and awaited
(`bicameral.platform.ProcessPin`: a pidfd on Linux, a process handle on
Windows), so once the identity has been checked through it, a signal can
never reach a different process that reused the pid, and the exit is
awaited without a sleep loop.
"""

from __future__ import annotations

import os

from bicameral.platform import (
    ProcessInfo,
    ProcessPin,
    current_uid,
    listener_of,
    probe,
    reap_if_child,
    start_time_tolerance,
)

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


def tolerance() -> float:
    """How far apart two readings of one process's start time may be."""
    return start_time_tolerance()


def start_times_equal(a: float, b: float) -> bool:
    """Whether two start times name the same process (clock-tick rounding)."""
    return abs(a - b) <= tolerance()


def process_start_time(pid: int | None = None) -> float:
    """Creation time of ``pid`` (default: this process), seconds since the epoch."""
    info = probe(os.getpid() if pid is None else pid)
    if info is None:
        raise ProcessLookupError(pid)
    return info.start_time


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
    uid = current_uid()
    if uid is not None and info.uid is not None and info.uid != uid:
        return "is now another user's process (the pid was reused)"
    if start_times_equal(info.start_time, start_time):
        return None
    if socket_path is not None and listener_of(socket_path) == (info.pid, uid):
        return None
    return "is now another process (the pid was reused)"


class ProcessHandle:
    """A process pinned for signalling and waiting, identity checked once.

    Use :meth:`open`, which returns ``None`` unless (pid, start time, uid) match:
    a handle is never created for a process the descriptor does not name.
    """

    def __init__(self, pin: ProcessPin) -> None:
        self.pid = pin.pid
        self._pin = pin

    @classmethod
    def open(
        cls, pid: int, start_time: float, socket_path: str | None = None
    ) -> ProcessHandle | None:
        """Pin ``pid`` if it is the process that started at ``start_time``.

        ``socket_path``: as in :func:`identity_matches`.
        """
        pin = ProcessPin.open(pid)
        if pin is None:
            return None
        # Checked *after* the pin exists: it refers to whatever process had
        # the pid when it was opened, so a match now means every later
        # signal through it reaches that same process.
        if not identity_matches(probe(pid), start_time, socket_path):
            pin.close()
            return None
        return cls(pin)

    def close(self) -> None:
        self._pin.close()

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def terminate(self) -> None:
        """Ask it to exit (SIGTERM; on Windows, which cannot ask, TerminateProcess)."""
        self._pin.terminate()

    def kill(self) -> None:
        """End it now (SIGKILL, TerminateProcess); one that already exited is fine."""
        self._pin.kill()

    def has_exited(self) -> bool:
        return self._pin.has_exited()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the exit; ``True`` once it has exited.

        An exited process that is still a zombie counts as exited.
        """
        return self._pin.wait(timeout)
