"""`open_process_group`: real subprocesses, stopped as a whole group, no orphans."""

# These tests inspect real processes with quick synchronous OS calls, and a
# grandchild reparented to init gives us no event to wait on: polling is the
# only way to see it go.
# ruff: noqa: ASYNC110, ASYNC222, ASYNC240

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import anyio
import pytest
import trio

from bicameral.supervisor import DEVNULL, open_process_group

from .conftest import alive

pytestmark = pytest.mark.posix("POSIX process groups, signals and sh")


async def wait_gone(pid: int) -> None:
    # Real time: the process is reaped by its (other) parent asynchronously.
    with trio.fail_after(5.0):
        while alive(pid):
            await trio.sleep(0.01)


SPAWN_GRANDCHILD = textwrap.dedent(
    """
    sleep 1000 &
    echo $$ $!
    wait
    """
)


async def read_line(stream: anyio.abc.ByteReceiveStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive()
    return data


async def test_pipes_round_trip_through_cat() -> None:
    async with open_process_group(["cat"], grace=1.0) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        await proc.stdin.send(b"hello\n")
        assert await read_line(proc.stdout) == b"hello\n"
        await proc.stdin.aclose()
        with pytest.raises(anyio.EndOfStream):
            await proc.stdout.receive()
        assert await proc.wait() == 0
    assert proc.returncode == 0


async def test_large_write_is_not_truncated() -> None:
    payload = os.urandom(1 << 20)  # far more than a pipe buffer: exercises wait_writable
    async with open_process_group(["cat"]) as proc, trio.open_nursery() as nursery:
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        async def feed() -> None:
            await stdin.send(payload)
            await stdin.aclose()

        nursery.start_soon(feed)
        got = bytearray()
        with pytest.raises(anyio.EndOfStream):
            while True:
                got += await proc.stdout.receive()
    assert bytes(got) == payload


async def test_runs_in_own_session_and_group() -> None:
    async with open_process_group(["sleep", "1000"], stdout=DEVNULL, grace=0) as proc:
        assert os.getpgid(proc.pid) == proc.pid
        assert os.getsid(proc.pid) == proc.pid
        assert os.getpgid(proc.pid) != os.getpgid(0)


async def test_exit_status_and_signal_are_reported_like_popen() -> None:
    async with open_process_group(["sh", "-c", "exit 3"], stdin=DEVNULL, stdout=DEVNULL) as p:
        assert await p.wait() == 3
    async with open_process_group(["sleep", "1000"], stdin=DEVNULL, stdout=DEVNULL) as p:
        os.kill(p.pid, signal.SIGKILL)
        assert await p.wait() == -signal.SIGKILL


async def test_leaving_kills_the_group_including_grandchildren() -> None:
    async with open_process_group(["sh", "-c", SPAWN_GRANDCHILD], grace=1.0) as proc:
        assert proc.stdout is not None
        leader, grandchild = map(int, (await read_line(proc.stdout)).split())
        assert leader == proc.pid
        assert alive(grandchild)
    assert not alive(proc.pid)
    await wait_gone(grandchild)  # reparented to init (or a subreaper), which reaps it
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # already reaped by us: no zombie


async def test_cancellation_kills_the_group_and_is_not_swallowed() -> None:
    with trio.CancelScope() as scope:
        async with open_process_group(["sh", "-c", SPAWN_GRANDCHILD]) as proc:
            assert proc.stdout is not None
            _, grandchild = map(int, (await read_line(proc.stdout)).split())
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not alive(proc.pid)
    await wait_gone(grandchild)


async def test_sigterm_ignored_gets_sigkill_after_grace(autojump_clock: trio.abc.Clock) -> None:
    # The shell traps TERM and says so; only SIGKILL after the grace can end it.
    script = "trap 'echo term' TERM; echo ready; while :; do sleep 0.01; done"
    start = trio.current_time()
    async with open_process_group(["sh", "-c", script], grace=3.0) as proc:
        assert proc.stdout is not None
        assert await read_line(proc.stdout) == b"ready\n"
        start = trio.current_time()
    # The mock clock only jumps when every task is blocked, so 3.0 s elapsed
    # exactly means we waited the grace out and did not return early.
    assert trio.current_time() - start == pytest.approx(3.0)
    assert proc.returncode == -signal.SIGKILL


async def test_sigterm_honoured_returns_without_waiting_the_grace() -> None:
    # Real clock: a mock clock would jump over the grace while the kernel is
    # still delivering SIGTERM. Returning well inside fail_after proves that
    # the exit, not the 100 s grace, ended the wait.
    with trio.fail_after(10):
        async with open_process_group(["sleep", "1000"], stdin=DEVNULL, stdout=DEVNULL, grace=100):
            pass


async def test_missing_program_raises_and_leaks_no_fds() -> None:
    before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    with pytest.raises(FileNotFoundError):
        async with open_process_group(["/nonexistent/program"]):
            pass  # pragma: no cover
    if before:
        assert set(os.listdir("/proc/self/fd")) <= before


async def test_env_and_cwd(tmp_path: os.PathLike[str]) -> None:
    async with open_process_group(
        ["sh", "-c", 'echo "$FOO $(pwd)"'],
        env={"FOO": "bar", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
    ) as proc:
        assert proc.stdout is not None
        line = await read_line(proc.stdout)
    assert line == f"bar {os.path.realpath(tmp_path)}\n".encode()


@pytest.mark.linux_only("PR_SET_PDEATHSIG")
def test_sigkill_of_the_parent_kills_the_upstream() -> None:
    # A separate python process opens a group (sleep) and prints its pid; we
    # SIGKILL that python process. PDEATHSIG must take the sleep down with it,
    # even though no cleanup code ran. The worker thread started after the
    # fork is irrelevant: the fork happened on the event loop's thread.
    code = textwrap.dedent(
        """
        import sys, trio
        from bicameral.supervisor import open_process_group, DEVNULL
        async def main():
            async with open_process_group(["sleep", "1000"], stdin=DEVNULL, stdout=DEVNULL) as p:
                await trio.to_thread.run_sync(lambda: None)
                print(p.pid, flush=True)
                await trio.sleep_forever()
        trio.run(main)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        upstream = int(parent.stdout.readline())
        assert alive(upstream)
        parent.kill()
        parent.wait()
        trio.run(wait_gone, upstream)
    finally:
        parent.kill()
        parent.wait()


async def test_runs_under_asyncio_too() -> None:
    async def main() -> bytes:
        async with open_process_group(["sh", "-c", "echo hi"], grace=1.0) as proc:
            assert proc.stdout is not None
            out = await read_line(proc.stdout)
            assert await proc.wait() == 0
            return out

    # From a worker thread: one event loop per thread.
    assert await trio.to_thread.run_sync(lambda: anyio.run(main, backend="asyncio")) == b"hi\n"


@pytest.mark.linux_only("pidfds and waitid(WNOWAIT)")
async def test_exit_is_awaited_by_a_thread_without_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback for a kernel without pidfd_open: waitid(WNOWAIT) in a thread.
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    async with open_process_group(["sh", "-c", "exit 7"], stdin=DEVNULL, stdout=DEVNULL) as proc:
        assert proc._tree.exit_fd() is None
        assert await proc.wait() == 7
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)


async def test_fork_happens_on_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # PR_SET_PDEATHSIG follows the forking *thread*: a worker thread that
    # retires would kill the child. So the fork must run on this thread.
    import threading

    from bicameral.supervisor import _process

    threads: list[int] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        threads.append(threading.get_ident())
        return real_popen(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(_process.subprocess, "Popen", recording_popen)
    async with open_process_group(["true"], stdin=DEVNULL, stdout=DEVNULL):
        pass
    assert threads == [threading.get_ident()]
