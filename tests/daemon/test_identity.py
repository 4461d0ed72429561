"""Process identity: pid + start time + uid; zombies and reused pids are not the daemon."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import psutil
import pytest

from bicameral.daemon._identity import (
    ProcessHandle,
    identity_matches,
    probe,
    process_start_time,
    start_times_equal,
)


def test_start_time_matches_psutil() -> None:
    mine = process_start_time()
    assert abs(mine - psutil.Process().create_time()) < 0.02
    assert abs(mine - time.time()) < 3600


def test_own_process_matches_itself() -> None:
    info = probe(os.getpid())
    assert info is not None and not info.zombie and info.uid == os.geteuid()
    assert identity_matches(info, process_start_time())


def test_a_dead_pid_has_no_identity() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(proc.pid)
    proc.wait()
    # Reaped: gone, or (rarely) reused by a process with another start time.
    assert not identity_matches(probe(proc.pid), start)
    assert not identity_matches(None, 0.0)
    assert probe(0) is None and probe(-5) is None


@pytest.mark.linux_only("waits for the exit without reaping, through a pidfd")
def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(proc.pid)
    pidfd = os.pidfd_open(proc.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    assert poller.poll(10_000)  # exited: a zombie until reaped
    os.close(pidfd)
    info = probe(proc.pid)
    assert info is not None and info.zombie
    assert not identity_matches(info, start)
    proc.wait()


def test_a_reused_pid_has_a_different_start_time() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        real = process_start_time(proc.pid)
        info = probe(proc.pid)
        assert identity_matches(info, real)
        assert not identity_matches(info, real - 5.0)
        assert not identity_matches(info, real + 0.5)
        assert ProcessHandle.open(proc.pid, real - 5.0) is None
    finally:
        proc.kill()
        proc.wait()


def test_start_times_are_equal_within_clock_ticks() -> None:
    assert start_times_equal(100.0, 100.0)
    assert start_times_equal(100.0, 100.01)
    assert not start_times_equal(100.0, 100.1)


def test_handle_signals_and_waits_without_polling() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    handle = ProcessHandle.open(proc.pid, process_start_time(proc.pid))
    assert handle is not None
    with handle:
        assert not handle.wait(0.05)
        t0 = time.monotonic()
        handle.terminate()
        assert handle.wait(5.0)
        assert time.monotonic() - t0 < 3.0
        assert handle.has_exited()
        handle.terminate()  # gone: not an error
    # wait() reaped our child.
    assert proc.poll() is not None


def test_a_process_of_another_user_is_not_ours() -> None:
    from bicameral.daemon._identity import ProcessInfo

    start = process_start_time()
    mine = ProcessInfo(os.getpid(), start_time=start, uid=os.geteuid(), zombie=False)
    theirs = ProcessInfo(os.getpid(), start_time=start, uid=os.geteuid() + 1, zombie=False)
    assert identity_matches(mine, start)
    assert not identity_matches(theirs, start)
