"""Process trees on this machine: the whole tree ends, grandchildren included.

POSIX runs here (a process group, SIGTERM then SIGKILL). The Windows Job
Object is exercised for real by the ``windows_only`` test in CI.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

import psutil
import pytest

from bicameral.platform import CURRENT, ProcessTree, start_tree

# A child that starts a grandchild, prints the grandchild's pid, and waits.
PARENT = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _start_parent() -> tuple[ProcessTree, int]:
    tree = start_tree(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,
    )
    assert tree.popen is not None and tree.popen.stdout is not None
    grandchild = int(tree.popen.stdout.readline())
    return tree, grandchild


def test_killing_a_tree_ends_the_grandchild_too() -> None:
    tree, grandchild = _start_parent()
    try:
        assert tree.peek_exit() is None
        tree.kill()
        tree.wait_blocking()
        code = tree.peek_exit()
        assert code is not None and code != 0
        assert _gone(grandchild)
    finally:
        tree.kill()
        tree.release()
        assert tree.popen is not None and tree.popen.stdout is not None
        tree.popen.stdout.close()


@pytest.mark.posix("process groups and SIGTERM")
def test_terminate_asks_the_whole_group() -> None:
    tree, grandchild = _start_parent()
    try:
        assert os.getpgid(tree.pid) == tree.pid
        assert os.getpgid(grandchild) == tree.pid
        tree.terminate()
        assert _gone(grandchild)
        tree.wait_blocking()
        assert tree.peek_exit() == -15
    finally:
        tree.kill()
        tree.release()
        assert tree.popen is not None and tree.popen.stdout is not None
        tree.popen.stdout.close()


@pytest.mark.posix("an exit descriptor: a pidfd (Linux) or a kqueue (macOS)")
def test_the_exit_descriptor_becomes_readable_and_linux_does_not_reap() -> None:
    tree = start_tree([sys.executable, "-c", "pass"], stdin=None, stdout=None, stderr=None)
    try:
        fd = tree.exit_fd()
        assert fd is not None
        assert select.select([fd], [], [], 10.0)[0] == [fd]
        assert tree.peek_exit() == 0
        if CURRENT.linux:
            # Seen, not reaped: the pid (the group id) stays ours until release.
            assert psutil.Process(tree.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        tree.release()
    assert tree.returncode == 0
    tree.kill()  # after release: a no-op, never a stranger's group


@pytest.mark.windows_only("Job Objects")
def test_a_job_ends_the_whole_tree_even_when_its_root_is_gone() -> None:
    tree, grandchild = _start_parent()
    try:
        assert tree.popen is not None
        tree.popen.kill()  # the root only: the grandchild lives on
        tree.popen.wait()
        assert psutil.pid_exists(grandchild)
        tree.kill()  # TerminateJobObject
        assert _gone(grandchild)
    finally:
        tree.kill()
        tree.release()
        assert tree.popen is not None and tree.popen.stdout is not None
        tree.popen.stdout.close()


@pytest.mark.windows_only("Job Objects: KILL_ON_JOB_CLOSE")
def test_closing_the_jobs_last_handle_ends_the_tree() -> None:
    # What happens when the daemon dies, however it dies: its handles close.
    tree, grandchild = _start_parent()
    try:
        job = tree._job
        job.close()
        assert _gone(grandchild)
    finally:
        tree.kill()
        tree.release()
        assert tree.popen is not None and tree.popen.stdout is not None
        tree.popen.stdout.close()
