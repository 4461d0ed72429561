"""OS processes in their own process group, stopped as a group.

Why not `anyio.open_process`: Trio forks from a worker thread, and Linux's
`PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the process.
A cached worker thread retiring after its idle timeout would then SIGKILL a
perfectly healthy upstream server. So the fork happens here, on the event
loop's own thread (`subprocess.Popen` is synchronous and quick: it returns
once the child has exec'd), and the pipes are plain non-blocking file
descriptors driven with `anyio.wait_readable` / `anyio.wait_writable`.

Why the exit is observed with `waitid(..., WNOWAIT)` and the child is reaped
only at the very end: while the leader is an unreaped zombie its pid cannot be
reused, so its process group id stays ours and the final `killpg(SIGKILL)`
cannot hit an unrelated group that happened to get the same number.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import IO, Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteSendStream

__all__ = ["ManagedProcess", "open_process_group"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL

_PR_SET_PDEATHSIG = 1
_READ_SIZE = 65536

# Loaded once in the parent: loading a shared library between fork and exec
# (in `preexec_fn`) is not async-signal-safe.
_libc: Any = None
if sys.platform == "linux":  # pragma: no branch
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)

_StdioArg = int | IO[Any] | None


def _pdeathsig_preexec(parent_pid: int) -> Any:
    """Build the `preexec_fn` that arms SIGKILL-on-parent-death in the child.

    The getppid() check closes the race where the parent died between fork()
    and prctl(): the signal would then never come, so the child kills itself.
    """

    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _PipeEnd:
    """One end of a pipe, owned and non-blocking: what both stream kinds share."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._closed = False

    def fileno(self) -> int:
        return self._fd

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._fd)
            os.close(self._fd)


class _FdReceiveStream(_PipeEnd, ByteReceiveStream):
    """The read end of a pipe, non-blocking, as an anyio byte stream."""

    async def receive(self, max_bytes: int = _READ_SIZE) -> bytes:
        # Trio's rule: every async call checkpoints, even when data is ready.
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            await anyio.lowlevel.cancel_shielded_checkpoint()
            if not data:
                raise anyio.EndOfStream
            return data


class _FdSendStream(_PipeEnd, ByteSendStream):
    """The write end of a pipe, non-blocking, as an anyio byte stream."""

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                continue
            except OSError as exc:  # BrokenPipeError: the reader is gone
                raise anyio.BrokenResourceError from exc
            view = view[written:]
        await anyio.lowlevel.cancel_shielded_checkpoint()


class ManagedProcess:
    """A running OS process that leads its own process group.

    Yielded by `open_process_group`; do not construct it yourself.

    Attributes:
      pid: the process id, which is also its process group (and session) id.
      stdin / stdout / stderr: anyio byte streams for the pipes that were
        requested with ``PIPE``, else ``None``.
      returncode: ``None`` while it runs; then its exit status, or minus the
        signal number that killed it (as `subprocess.Popen` reports it).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: _FdSendStream | None,
        stdout: _FdReceiveStream | None,
        stderr: _FdReceiveStream | None,
    ) -> None:
        self._popen = popen
        self.pid: int = popen.pid
        self.stdin: ByteSendStream | None = stdin
        self.stdout: ByteReceiveStream | None = stdout
        self.stderr: ByteReceiveStream | None = stderr
        self.returncode: int | None = None
        self._wait_lock = anyio.Lock()
        self._reaped = False
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):  # ENOSYS on old kernels
                self._pidfd = os.pidfd_open(self.pid)

    def __repr__(self) -> str:
        return f"<ManagedProcess pid={self.pid} returncode={self.returncode}>"

    @property
    def stdin_fd(self) -> int | None:
        """Our end of the stdin pipe (``PIPE`` only), non-blocking, for a caller's own writer.

        It stays owned by `stdin`: closed when `open_process_group` is left.
        """
        return self.stdin.fileno() if isinstance(self.stdin, _FdSendStream) else None

    @property
    def stdout_fd(self) -> int | None:
        """Our end of the stdout pipe (``PIPE`` only), non-blocking, for a caller's own reader.

        It stays owned by `stdout`: closed when `open_process_group` is left.
        """
        return self.stdout.fileno() if isinstance(self.stdout, _FdReceiveStream) else None

    def _peek_exit(self) -> bool:
        """Record the exit status if the process has exited, without reaping it."""
        if self.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped (only by _reap)
            return self.returncode is not None
        if info is None:
            return False
        if info.si_code == os.CLD_EXITED:
            self.returncode = info.si_status
        else:  # CLD_KILLED / CLD_DUMPED
            self.returncode = -info.si_status
        return True

    async def wait(self) -> int:
        """Wait for the process (the group leader) to exit; return `returncode`.

        Does not poll: on Linux it waits for its pidfd to become readable;
        elsewhere a worker thread blocks in ``waitid``. The process is not
        reaped here (see the module docstring); leaving `open_process_group`
        reaps it. Safe to call from several tasks and after the exit.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        async with self._wait_lock:
            while not self._peek_exit():
                if self._pidfd is not None:
                    await anyio.wait_readable(self._pidfd)
                else:
                    await anyio.to_thread.run_sync(
                        os.waitid,
                        os.P_PID,
                        self.pid,
                        os.WEXITED | os.WNOWAIT,
                        abandon_on_cancel=True,
                    )
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: int) -> None:
        """Send `sig` to every process in the group; a no-op once it is empty.

        Also a no-op after the context has exited: the leader is reaped then,
        and its group id could already belong to someone else.
        """
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def _shutdown(self, grace: float) -> None:
        """SIGTERM the group, wait up to `grace` for the leader, SIGKILL the group, reap."""
        if isinstance(self.stdin, _FdSendStream):
            # An MCP stdio server's documented cue to exit is EOF on stdin.
            self.stdin.close()
        self.signal_group(signal.SIGTERM)
        if grace > 0:
            with anyio.move_on_after(grace):
                await self.wait()
        # Unconditional: a grandchild may outlive (or ignore) the leader's exit.
        # The leader is still an unreaped zombie at worst, so the group id is ours.
        self.signal_group(signal.SIGKILL)
        await self.wait()
        self._popen.wait()  # reaps the zombie at once; keeps Popen's bookkeeping right
        self._reaped = True
        if self._pidfd is not None:
            anyio.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        for rstream in (self.stdout, self.stderr):
            if isinstance(rstream, _FdReceiveStream):
                rstream.close()


def _pipe_for(arg: _StdioArg, child_reads: bool) -> tuple[_StdioArg, int | None, int | None]:
    """Return (what Popen gets, our end, the child's end we must close after fork)."""
    if arg != PIPE:
        return arg, None, None
    r, w = os.pipe()  # both non-inheritable (PEP 446); Popen dup2()s the child's end
    if child_reads:
        return r, w, r
    return w, r, w


@contextlib.asynccontextmanager
async def open_process_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: _StdioArg = PIPE,
    stdout: _StdioArg = PIPE,
    stderr: _StdioArg = None,
    grace: float = 5.0,
) -> AsyncIterator[ManagedProcess]:
    """Run `argv` as the leader of a new session and process group.

    Yields a `ManagedProcess`. `stdin`, `stdout` and `stderr` take what
    `subprocess.Popen` takes (``PIPE``, ``DEVNULL``, ``None`` to inherit, a
    file descriptor or file); ``PIPE`` gives an anyio stream on the
    `ManagedProcess`. `env`, when given, is the child's whole environment.

    Semantics a caller relies on:

    * The process is started with ``start_new_session=True``: it leads its own
      session and process group, so signals for the group reach every
      grandchild it spawns (``npx``/``uvx`` wrappers) and a terminal's
      Ctrl-C does not.
    * On Linux it gets ``PR_SET_PDEATHSIG(SIGKILL)``: if this process dies,
      even by SIGKILL, the kernel kills the leader. The fork happens on the
      calling (event loop) thread because the signal follows the forking
      *thread*. Grandchildren are not covered by the kernel; they lose their
      leader's pipes and are killed as a group by any orderly exit below.
    * Leaving the block, normally, by an exception or by cancellation: our end
      of stdin is closed, the group gets SIGTERM, the leader gets up to
      `grace` seconds to exit, then the whole group gets SIGKILL (always, so
      that a grandchild that ignored SIGTERM or outlived its leader dies
      too), and the leader is reaped. This cleanup is shielded from
      cancellation; it is bounded by `grace` (plus the kernel's SIGKILL).
      ``grace=0`` kills at once.
    * Failing to start (no such program, bad cwd) raises `OSError` from here,
      with nothing left behind.
    """
    parent_pid = os.getpid()
    popen_stdin, our_stdin, child_stdin = _pipe_for(stdin, child_reads=True)
    popen_stdout, our_stdout, child_stdout = _pipe_for(stdout, child_reads=False)
    popen_stderr, our_stderr, child_stderr = _pipe_for(stderr, child_reads=False)
    ours = [fd for fd in (our_stdin, our_stdout, our_stderr) if fd is not None]
    theirs = [fd for fd in (child_stdin, child_stdout, child_stderr) if fd is not None]
    try:
        # Deliberately synchronous, on this thread: see the module docstring.
        popen = subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            stdin=popen_stdin,
            stdout=popen_stdout,
            stderr=popen_stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            # The hook only calls prctl/getppid/kill; accepted for PDEATHSIG.
            preexec_fn=_pdeathsig_preexec(parent_pid) if _libc is not None else None,  # noqa: PLW1509
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    proc = ManagedProcess(
        popen,
        _FdSendStream(our_stdin) if our_stdin is not None else None,
        _FdReceiveStream(our_stdout) if our_stdout is not None else None,
        _FdReceiveStream(our_stderr) if our_stderr is not None else None,
    )
    try:
        yield proc
    finally:
        with anyio.CancelScope(shield=True):
            await proc._shutdown(grace)
