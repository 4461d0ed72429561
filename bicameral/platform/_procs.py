"""What the OS says about a process, and a process held while it is stopped.

`probe` reads a pid's start time, owner and whether it is a zombie: from
``/proc`` directly on Linux (boot time plus the ``starttime`` clock ticks of
``/proc/<pid>/stat``, psutil's own arithmetic, without psutil's import on the
CLI's fast path), from psutil elsewhere. Start times of one process agree
within `start_time_tolerance`.

`ProcessPin` holds a process so that a signal or a wait can never reach
another one that reused its pid, and waits for its exit without polling:

- Linux: a pidfd (``pidfd_open``); signals go through it, its readability
  is the exit.
- macOS: a kqueue with ``EVFILT_PROC``/``NOTE_EXIT`` on the pid. kqueue does
  not pin the pid against reuse: signals are sent by pid, right after the
  identity check, as on any POSIX without pidfds.
- Windows: a process handle (``OpenProcess``), which does pin it; the exit
  is ``WaitForSingleObject``, the kill ``TerminateProcess``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from bicameral.platform._os import CURRENT, Platform

__all__ = [
    "ProcessInfo",
    "ProcessPin",
    "probe",
    "process_environ",
    "reap_if_child",
    "start_time_tolerance",
]

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
        if sys.platform == "win32":
            _cache["clk_tck"] = 100.0
        else:
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


def start_time_tolerance(platform: Platform = CURRENT) -> float:
    """How far apart two readings of one process's start time may be.

    A clock tick on Linux (``/proc`` counts in ticks); psutil's reading
    elsewhere is exact to the microsecond, kept at 10 ms.
    """
    return 1.0 / _clk_tck() + 1e-3 if platform.linux else 0.01


def _probe_proc(pid: int) -> ProcessInfo | None:
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


def _probe_psutil(pid: int) -> ProcessInfo | None:
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
    if sys.platform == "linux":
        return _probe_proc(pid)
    else:
        return _probe_psutil(pid)


def process_environ(pid: int) -> dict[str, str] | None:
    """The environment of ``pid`` (a process of this user), or ``None`` if it cannot be read.

    Linux reads ``/proc/<pid>/environ``; elsewhere psutil asks the OS
    (``KERN_PROCARGS2`` on macOS, the process's memory on Windows).
    """
    if sys.platform == "linux":
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key:
                env[os.fsdecode(key)] = os.fsdecode(value)
        return env
    import psutil  # type: ignore[import-untyped, unused-ignore]

    try:
        return dict(psutil.Process(pid).environ())
    except psutil.Error:
        return None


def reap_if_child(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our exited child, so no zombie lingers."""
    # Windows has no zombies: a process object lives as long as a handle to it.
    if sys.platform != "win32":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


class ProcessPin:
    """A process held for signalling and waiting (see the module docstring).

    `open` returns ``None`` when there is no such process. The caller checks
    its identity *after* opening (`probe`): the pin then refers to the
    process that was checked.
    """

    def __init__(self, pid: int, handle: object) -> None:
        self.pid = pid
        self._handle = handle  # a pidfd, a kqueue, a Windows handle, or None

    @classmethod
    def open(cls, pid: int) -> ProcessPin | None:
        if sys.platform == "win32":
            import _winapi

            synchronize, terminate, query = 0x00100000, 0x0001, 0x1000
            try:
                handle = _winapi.OpenProcess(synchronize | terminate | query, False, pid)
            except OSError:
                return None
            return cls(pid, handle)
        elif sys.platform == "linux":
            try:
                return cls(pid, os.pidfd_open(pid))
            except ProcessLookupError:
                return None
            except (OSError, AttributeError):  # a kernel, or a Python, without pidfds
                return cls(pid, None)
        else:
            import select

            kq = select.kqueue()
            event = select.kevent(
                pid,
                filter=select.KQ_FILTER_PROC,
                flags=select.KQ_EV_ADD,
                fflags=select.KQ_NOTE_EXIT,
            )
            try:
                kq.control([event], 0, 0)
            except ProcessLookupError:
                kq.close()
                return None
            except OSError:  # a zombie already: `wait` asks `probe`
                kq.close()
                return cls(pid, None)
            return cls(pid, kq)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if sys.platform == "win32":
            import _winapi

            assert isinstance(handle, int)
            _winapi.CloseHandle(handle)
        elif isinstance(handle, int):
            os.close(handle)
        else:
            handle.close()  # type: ignore[attr-defined]

    def __enter__(self) -> ProcessPin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def terminate(self) -> None:
        """Ask it to exit (SIGTERM); Windows has no such request, so it ends it."""
        import signal

        if sys.platform == "win32":
            self.kill()
        else:
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """End it now: SIGKILL, or TerminateProcess. Already gone: fine."""
        if sys.platform == "win32":
            import _winapi

            if isinstance(self._handle, int):
                with contextlib.suppress(OSError):
                    _winapi.TerminateProcess(self._handle, 1)
        else:
            import signal

            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if sys.platform == "win32":
            return
        import signal

        with contextlib.suppress(ProcessLookupError):
            if sys.platform == "linux" and isinstance(self._handle, int):
                signal.pidfd_send_signal(self._handle, signum)
            else:
                os.kill(self.pid, signum)

    def has_exited(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the exit; ``True`` once it has exited.

        A zombie counts as exited (and is reaped if it is our child).
        """
        deadline = time.monotonic() + timeout
        handle = self._handle
        if sys.platform == "win32":
            import _winapi

            if isinstance(handle, int):
                millis = max(0, int(timeout * 1000))
                return _winapi.WaitForSingleObject(handle, millis) == _winapi.WAIT_OBJECT_0
        else:
            import select

            if isinstance(handle, int):
                poller = select.poll()
                poller.register(handle, select.POLLIN)
                while True:
                    remaining = max(0.0, deadline - time.monotonic())
                    if poller.poll(remaining * 1000):
                        reap_if_child(self.pid)
                        return True
                    if remaining <= 0:
                        return False
            if handle is not None and sys.platform != "linux":
                kq: select.kqueue = handle  # type: ignore[assignment]
                while True:
                    remaining = max(0.0, deadline - time.monotonic())
                    if kq.control(None, 1, remaining):
                        reap_if_child(self.pid)
                        return True
                    if remaining <= 0:
                        return False
        return self._wait_polling(deadline)

    def _wait_polling(self, deadline: float) -> bool:
        """Without a kernel handle: ask every few ms, backing off to 50 ms."""
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
