"""A child process and everything it spawns, stopped as one (SPEC §6).

MCP servers are often ``npx``/``uvx`` wrappers whose real server is a
grandchild, so a server is a *tree*, and stopping it means stopping the tree.

- Linux: the child leads a new session and process group; stopping signals
  the group (SIGTERM, then SIGKILL). The child also gets
  ``PR_SET_PDEATHSIG(SIGKILL)``, so the kernel kills it should the daemon
  die, even by SIGKILL; grandchildren lose their leader's pipes, and the
  reaper (`start_reaper`) ends what still carries the daemon's tag. The exit
  is watched through a pidfd, and observed with ``waitid(WNOWAIT)``, so the
  leader stays an unreaped zombie until `release`: its pid, which is the
  group's id, cannot be reused while the group may still be signalled.
- macOS: the same process group, no parent-death signal (macOS has none;
  the reaper covers a killed daemon). The exit is watched with a kqueue
  ``NOTE_EXIT``. macOS has no ``waitid``, so the leader is reaped when its
  exit is seen; its group id stays reserved while any member lives, which
  is when the group is still signalled.
- Windows: the child is created in a new process group, suspended, put in
  its own Job Object with ``KILL_ON_JOB_CLOSE`` and resumed (`JobObject`):
  every descendant is in the job, and the job dies with the daemon's
  handle, however the daemon dies. Stopping sends CTRL_BREAK to the group
  (heard only by a console it shares), then ends the job.

Plain ``subprocess``, no event loop here: the supervisor wraps it in anyio.
On Linux the fork must happen on the event loop's thread, because
``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import IO, Any

from bicameral.platform._os import CURRENT, Platform
from bicameral.platform._signals import CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ProcessTree", "adopt_tree", "pipes_are_pollable", "start_tree", "tree_popen_kwargs"]

_PR_SET_PDEATHSIG = 1

# Loaded once in the parent: loading a shared library between fork and exec
# (in `preexec_fn`) is not async-signal-safe.
_libc: Any = None
if sys.platform == "linux":
    import ctypes

    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)

StdioArg = int | IO[Any] | None


def pipes_are_pollable(platform: Platform = CURRENT) -> bool:
    """Whether a pipe's descriptor can be waited on by the event loop (not on Windows).

    Where it can, the supervisor starts trees with `start_tree` on the event
    loop's thread and drives the pipes itself; where it cannot, it lets its
    event loop start the process (overlapped pipes on Windows) with
    `tree_popen_kwargs` and hands the pid to `adopt_tree`.
    """
    return platform.posix


def _pdeathsig_preexec(parent_pid: int) -> Any:
    """The ``preexec_fn`` arming SIGKILL-on-parent-death in the child.

    The getppid() check closes the race where the parent died between fork()
    and prctl(): the signal would then never come, so the child kills itself.
    """

    def preexec() -> None:
        if sys.platform != "win32":
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def tree_popen_kwargs(platform: Platform = CURRENT) -> dict[str, Any]:
    """How ``Popen`` starts a tree's root on ``platform`` (the pure part of `start_tree`)."""
    if platform.windows:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED}
    kwargs: dict[str, Any] = {"start_new_session": True}
    if platform.linux and _libc is not None:
        kwargs["preexec_fn"] = _pdeathsig_preexec(os.getpid())
    return kwargs


class ProcessTree:
    """A started child and its descendants. Use `start_tree` or `adopt_tree`.

    Without a ``popen`` (a tree adopted by pid) only `terminate`, `kill` and
    `release` apply: whoever started the process waits for it.
    """

    def __init__(
        self, popen: subprocess.Popen[bytes] | None, job: Any = None, *, pid: int | None = None
    ) -> None:
        self.popen = popen
        self.pid: int = popen.pid if popen is not None else (pid or 0)
        self.returncode: int | None = None
        self._job = job
        self._released = False
        self._watch: Any = None  # a pidfd (Linux), a kqueue (macOS)
        if popen is None:
            pass
        elif sys.platform == "linux":
            # ENOSYS on old kernels; no os.pidfd_open in a Python built without it.
            with contextlib.suppress(OSError, AttributeError):
                self._watch = os.pidfd_open(self.pid)
        elif sys.platform != "win32":
            import select

            kq = select.kqueue()
            event = select.kevent(
                self.pid,
                filter=select.KQ_FILTER_PROC,
                flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                fflags=select.KQ_NOTE_EXIT,
            )
            try:
                kq.control([event], 0, 0)
                self._watch = kq
            except OSError:  # it exited already: `exit_fd` is None, the wait is a thread's
                kq.close()

    def exit_fd(self) -> int | None:
        """A descriptor that becomes readable once the child has exited; ``None``: use a thread."""
        if self._watch is None:
            return None
        return self._watch if isinstance(self._watch, int) else int(self._watch.fileno())

    def peek_exit(self) -> int | None:
        """The exit status if the child has exited (minus the signal number), else ``None``.

        On Linux it is not reaped (see the module docstring); elsewhere it is.
        """
        if self.returncode is not None:
            return self.returncode
        if sys.platform == "linux":
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped by `release` already
                return self.returncode
            if info is None:
                return None
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            self.returncode = code
            return code
        if self.popen is not None:
            self.returncode = self.popen.poll()
        return self.returncode

    def wait_blocking(self) -> None:
        """Block until the child exits (for a worker thread); not reaped on Linux."""
        if sys.platform == "linux":
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        elif self.popen is not None:
            self.popen.wait()

    def terminate(self) -> None:
        """Ask the whole tree to exit: SIGTERM to the group (CTRL_BREAK on Windows)."""
        if self._released:
            return
        with contextlib.suppress(OSError):
            if sys.platform == "win32":
                os.kill(self.pid, signal.CTRL_BREAK_EVENT)
            else:
                os.killpg(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """End the whole tree now: SIGKILL to the group; on Windows, end the job.

        A no-op once released: the group id could belong to someone else then.
        """
        if self._released:
            return
        if sys.platform == "win32":
            if self._job is not None:
                with contextlib.suppress(OSError):
                    self._job.terminate()
            if self.popen is not None:
                with contextlib.suppress(OSError):
                    self.popen.kill()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def release(self) -> None:
        """Reap the child and close what watched it. Call once it has exited (after `kill`)."""
        if self._released:
            return
        if self.popen is not None:
            self.popen.wait()
            if self.returncode is None:
                self.returncode = self.popen.returncode
        self._released = True
        watch, self._watch = self._watch, None
        if isinstance(watch, int):
            os.close(watch)
        elif watch is not None:
            watch.close()
        job, self._job = self._job, None
        if job is not None:
            job.close()


def start_tree(
    argv: Sequence[str],
    *,
    stdin: StdioArg,
    stdout: StdioArg,
    stderr: StdioArg,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> ProcessTree:
    """Start ``argv`` as the root of a new tree (see the module docstring).

    Raises ``OSError`` when it cannot be started, with nothing left behind.
    """
    kwargs = tree_popen_kwargs()
    popen = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        **kwargs,
    )
    if sys.platform != "win32":
        return ProcessTree(popen)
    from bicameral.platform._winjob import JobObject

    try:
        job = JobObject()
        try:
            job.adopt_suspended(popen.pid)
        except BaseException:
            job.close()
            raise
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return ProcessTree(popen, job)


def adopt_tree(pid: int) -> ProcessTree:
    """Make the process ``pid``, started suspended with `tree_popen_kwargs`, a tree's root.

    Windows: it joins a new Job Object and is resumed. POSIX needs nothing
    beyond its flags (it leads its own group already). On failure the
    caller kills the process it started.
    """
    if sys.platform != "win32":
        return ProcessTree(None, pid=pid)
    from bicameral.platform._winjob import JobObject

    job = JobObject()
    try:
        job.adopt_suspended(pid)
    except BaseException:
        job.close()
        raise
    return ProcessTree(None, job, pid=pid)
