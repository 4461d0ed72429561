"""Starting the daemon detached, with a few descriptors inherited.

POSIX uses ``os.posix_spawn`` where it can set the session (Linux: vfork
speed, and no ``Popen`` whose finaliser warns about a running child): a new
session, stdin and stdout on ``/dev/null``, stderr appended to the log, the
signals a daemon must handle reset to their defaults and SIGHUP, SIGINT,
SIGTERM *blocked* (the mask survives ``exec``): one that arrives while the
daemon is still importing stays pending until its handlers are in.
macOS: ``Popen`` with ``start_new_session``. Windows: ``Popen`` with
``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP``, inheriting exactly the
listed handles (``STARTUPINFO.lpAttributeList["handle_list"]``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from bicameral.platform._signals import detach_popen_kwargs

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence

__all__ = ["DetachedChild", "spawn_detached"]


class DetachedChild:
    """The spawned daemon, from its parent's side, for the failure paths.

    Until the parent reaps it the pid cannot be reused, so signalling it by
    pid is safe here.
    """

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen

    def wait(self, timeout: float) -> int | None:
        """Reap it within ``timeout``; its exit code, or ``None`` if still running."""
        if self._popen is not None:
            import subprocess

            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        if sys.platform == "linux":
            import select

            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:  # pragma: no cover - gone already, or no pidfds
                pidfd = None
            if pidfd is not None:
                try:
                    poller = select.poll()
                    poller.register(pidfd, select.POLLIN)
                    if not poller.poll(timeout * 1000):
                        return None
                finally:
                    os.close(pidfd)
        if sys.platform == "win32":  # pragma: no cover - always a Popen there
            return None
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill_and_wait(self) -> None:
        if self._popen is not None:
            self._popen.kill()
            self._popen.wait()
            return
        if sys.platform != "win32":
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)


def spawn_detached(
    argv: Sequence[str], env: Mapping[str, str], *, inherit: Sequence[int], log_fd: int
) -> DetachedChild:
    """Spawn ``argv`` detached, inheriting the descriptors ``inherit`` and nothing else.

    stdin and stdout are ``/dev/null`` (``NUL``), stderr is ``log_fd``.
    Raises ``OSError`` when it cannot be started.
    """
    import signal
    import subprocess

    args, environ = list(argv), dict(env)
    if sys.platform == "win32":
        import msvcrt

        handles = [msvcrt.get_osfhandle(fd) for fd in inherit]
        for handle in handles:
            os.set_handle_inheritable(handle, True)
        startupinfo = subprocess.STARTUPINFO()
        startupinfo.lpAttributeList = {"handle_list": handles}
        popen: subprocess.Popen[bytes] = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            env=environ,
            startupinfo=startupinfo,
            close_fds=True,
            **detach_popen_kwargs(),
        )
        return DetachedChild(popen.pid, popen)
    for fd in inherit:
        os.set_inheritable(fd, True)
    try:
        if sys.platform == "linux":
            stops = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM}
            reset = {signal.SIGPIPE, signal.SIGXFSZ, *stops}
            pid = os.posix_spawn(
                args[0],
                args,
                environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
                setsigmask=stops,
                setsigdef=reset,
            )
            return DetachedChild(pid)
        kwargs: dict[str, Any] = detach_popen_kwargs()
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            pass_fds=tuple(inherit),
            env=environ,
            **kwargs,
        )
        return DetachedChild(popen.pid, popen)
    finally:
        for fd in inherit:
            os.set_inheritable(fd, False)
