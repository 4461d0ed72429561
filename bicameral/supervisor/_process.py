"""OS processes as trees, stopped as one: process groups, or Job Objects on Windows.

The platform's part (how a tree is started, signalled, killed and watched)
is `bicameral.platform.ProcessTree`; this module puts it on the event loop.

POSIX: why not `anyio.open_process`. Trio forks from a worker thread, and
Linux's `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the
process. A cached worker thread retiring after its idle timeout would then
SIGKILL a perfectly healthy upstream server. So the fork happens here, on
the event loop's own thread (`subprocess.Popen` is synchronous and quick: it
returns once the child has exec'd), and the pipes are plain non-blocking
file descriptors driven with `anyio.wait_readable` / `anyio.wait_writable`.
The exit is watched through a pidfd (Linux) or a kqueue (macOS) and, on
Linux, observed without reaping (``waitid(WNOWAIT)``): while the leader is
an unreaped zombie its pid cannot be reused, so its process group id stays
ours and the final group SIGKILL cannot hit an unrelated group that
happened to get the same number.

Windows: pipes cannot be waited on by descriptor, so the event loop starts
the process (`anyio.open_process`: overlapped pipes under Trio), suspended,
and the tree adopts it into its Job Object before it runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import IO, Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteSendStream

from bicameral.platform import (
    ProcessTree,
    adopt_tree,
    pipes_are_pollable,
    set_nonblocking,
    start_tree,
    tree_popen_kwargs,
)

__all__ = ["ManagedProcess", "open_process_group"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL

_READ_SIZE = 65536

_StdioArg = int | IO[Any] | None


class _PipeEnd:
    """One end of a pipe, owned and non-blocking: what both stream kinds share."""

    def __init__(self, fd: int) -> None:
        set_nonblocking(fd)
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
    """A running OS process leading its own tree (process group, or Job Object).

    Yielded by `open_process_group`; do not construct it yourself.

    Attributes:
      pid: the process id (on POSIX also its process group and session id).
      stdin / stdout / stderr: anyio byte streams for the pipes that were
        requested with ``PIPE``, else ``None``.
      returncode: ``None`` while it runs; then its exit status, or minus the
        signal number that killed it (as `subprocess.Popen` reports it).
    """

    def __init__(
        self,
        tree: ProcessTree,
        stdin: ByteSendStream | None,
        stdout: ByteReceiveStream | None,
        stderr: ByteReceiveStream | None,
        wait_exit: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._tree = tree
        self.pid: int = tree.pid
        self.stdin: ByteSendStream | None = stdin
        self.stdout: ByteReceiveStream | None = stdout
        self.stderr: ByteReceiveStream | None = stderr
        self.returncode: int | None = None
        self._wait_lock = anyio.Lock()
        self._wait_exit = wait_exit if wait_exit is not None else self._wait_tree

    def __repr__(self) -> str:
        return f"<ManagedProcess pid={self.pid} returncode={self.returncode}>"

    @property
    def stdin_fd(self) -> int | None:
        """Our end of the stdin pipe (``PIPE`` only), non-blocking, for a caller's own writer.

        It stays owned by `stdin`: closed when `open_process_group` is left. ``None``
        where pipes are not descriptors the event loop can wait on (Windows).
        """
        return self.stdin.fileno() if isinstance(self.stdin, _FdSendStream) else None

    @property
    def stdout_fd(self) -> int | None:
        """Our end of the stdout pipe (``PIPE`` only), non-blocking, for a caller's own reader.

        It stays owned by `stdout`: closed when `open_process_group` is left. ``None``
        where pipes are not descriptors the event loop can wait on (Windows).
        """
        return self.stdout.fileno() if isinstance(self.stdout, _FdReceiveStream) else None

    async def _wait_tree(self) -> int:
        tree = self._tree
        while (code := tree.peek_exit()) is None:
            fd = tree.exit_fd()
            if fd is not None:
                await anyio.wait_readable(fd)
            else:
                await anyio.to_thread.run_sync(tree.wait_blocking, abandon_on_cancel=True)
        return code

    async def wait(self) -> int:
        """Wait for the process (the tree's root) to exit; return `returncode`.

        Does not poll: on Linux it waits for its pidfd to become readable, on
        macOS for a kqueue ``NOTE_EXIT``, on Windows for the process handle.
        Safe to call from several tasks and after the exit.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        async with self._wait_lock:
            if self.returncode is None:
                self.returncode = await self._wait_exit()
        return self.returncode

    def terminate(self) -> None:
        """Ask the whole tree to exit: SIGTERM to the group (CTRL_BREAK on Windows).

        A no-op once the context has exited.
        """
        self._tree.terminate()

    def kill(self) -> None:
        """End the whole tree now: SIGKILL to the group, or the Job Object ended."""
        self._tree.kill()

    async def _shutdown(self, grace: float) -> None:
        """Close stdin, terminate the tree, wait up to `grace` for the root, kill the tree, reap."""
        if self.stdin is not None:
            # An MCP stdio server's documented cue to exit is EOF on stdin.
            with contextlib.suppress(Exception):
                await self.stdin.aclose()
        self.terminate()
        if grace > 0:
            with anyio.move_on_after(grace):
                await self.wait()
        # Unconditional: a grandchild may outlive (or ignore) the root's exit.
        # On Linux the root is still an unreaped zombie at worst, so the group id is ours.
        self.kill()
        await self.wait()
        self._tree.release()
        for rstream in (self.stdout, self.stderr):
            if rstream is not None:
                with contextlib.suppress(Exception):
                    await rstream.aclose()


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
    """Run `argv` as the root of a new process tree.

    Yields a `ManagedProcess`. `stdin`, `stdout` and `stderr` take what
    `subprocess.Popen` takes (``PIPE``, ``DEVNULL``, ``None`` to inherit, a
    file descriptor or file); ``PIPE`` gives an anyio stream on the
    `ManagedProcess`. `env`, when given, is the child's whole environment.

    Semantics a caller relies on (docs/platforms.md has them per platform):

    * POSIX: the process leads its own session and process group, so
      signals for the group reach every grandchild it spawns (``npx``/``uvx``
      wrappers) and a terminal's Ctrl-C does not. Windows: it runs in its
      own Job Object (``KILL_ON_JOB_CLOSE``) and process group, and is put in
      the job before its first instruction runs.
    * If this process dies, even by SIGKILL: on Linux the kernel kills the
      leader (``PR_SET_PDEATHSIG``; the fork happens on the calling thread
      because the signal follows the forking *thread*); on Windows the job
      dies with our handle to it, the whole tree with it; on macOS, and for
      grandchildren on Linux, the daemon's reaper ends what carries its tag.
    * Leaving the block, normally, by an exception or by cancellation: our end
      of stdin is closed, the tree is asked to exit (SIGTERM to the group;
      CTRL_BREAK on Windows), the root gets up to `grace` seconds to exit,
      then the whole tree is killed (always, so that a grandchild that
      ignored the request or outlived its root dies too: SIGKILL to the
      group, or the job ended), and the root is reaped. This cleanup is
      shielded from cancellation; it is bounded by `grace` (plus the kill).
      ``grace=0`` kills at once.
    * Failing to start (no such program, bad cwd) raises `OSError` from here,
      with nothing left behind.
    """
    if pipes_are_pollable():
        proc = _start_posix(argv, env, cwd, stdin, stdout, stderr)
    else:
        proc = await _start_with_loop(argv, env, cwd, stdin, stdout, stderr)
    try:
        yield proc
    finally:
        with anyio.CancelScope(shield=True):
            await proc._shutdown(grace)


def _start_posix(  # noqa: PLR0917 - private, one caller
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    stdin: _StdioArg,
    stdout: _StdioArg,
    stderr: _StdioArg,
) -> ManagedProcess:
    """Fork on this (the event loop's) thread; our pipe ends become non-blocking streams."""
    popen_stdin, our_stdin, child_stdin = _pipe_for(stdin, child_reads=True)
    popen_stdout, our_stdout, child_stdout = _pipe_for(stdout, child_reads=False)
    popen_stderr, our_stderr, child_stderr = _pipe_for(stderr, child_reads=False)
    ours = [fd for fd in (our_stdin, our_stdout, our_stderr) if fd is not None]
    theirs = [fd for fd in (child_stdin, child_stdout, child_stderr) if fd is not None]
    try:
        # Deliberately synchronous, on this thread: see the module docstring.
        tree = start_tree(
            argv, stdin=popen_stdin, stdout=popen_stdout, stderr=popen_stderr, env=env, cwd=cwd
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return ManagedProcess(
        tree,
        _FdSendStream(our_stdin) if our_stdin is not None else None,
        _FdReceiveStream(our_stdout) if our_stdout is not None else None,
        _FdReceiveStream(our_stderr) if our_stderr is not None else None,
    )


async def _start_with_loop(  # noqa: PLR0917 - private, one caller
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    stdin: _StdioArg,
    stdout: _StdioArg,
    stderr: _StdioArg,
) -> ManagedProcess:
    """Windows: the event loop starts it suspended; the tree adopts it, then it runs."""
    process = await anyio.open_process(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        **tree_popen_kwargs(),
    )
    try:
        tree = adopt_tree(process.pid)
    except BaseException:
        with anyio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            await process.aclose()
        raise
    return ManagedProcess(tree, process.stdin, process.stdout, process.stderr, process.wait)
