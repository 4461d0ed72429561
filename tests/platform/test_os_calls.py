"""The seam's OS calls on this machine, and the other platforms' code paths that can run here.

Where a Windows or macOS implementation is plain Python over portable calls
(the thread that reads a pipe on Windows, psutil's view of processes used on
macOS), it runs here too; what only the real OS has runs in CI
(`.github/workflows/ci.yml`) under the platform markers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from bicameral.platform import (
    CURRENT,
    DirectoryWatch,
    ProcessPin,
    _pipes,
    _procs,
    fd_from_env,
    fd_opened_for,
    fd_to_env,
    fds_from_ancillary,
    fds_space,
    flock,
    listener_of,
    peer_uid,
    probe,
    process_environ,
    read_line,
    send_fds,
    unix_socket,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


# --- pipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("reader", [read_line, _pipes._read_line_thread], ids=["select", "thread"])
def test_a_line_end_of_file_and_a_timeout(reader: object) -> None:
    read = reader  # the thread is Windows' way; it runs as well here
    r, w = os.pipe()
    try:
        os.write(w, b"READY {}\n")
        assert read(r, 5.0) == b"READY {}\n"  # type: ignore[operator]
        assert read(r, 0.05) is None  # type: ignore[operator]
        os.close(w)
        w = -1
        assert read(r, 5.0) == b""  # type: ignore[operator]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_descriptor_named_in_the_environment_is_found_again() -> None:
    r, w = os.pipe()
    try:
        # POSIX: the number itself; Windows: the OS handle, opened as a new descriptor.
        found = fd_from_env(fd_to_env(w))
        assert (found == w) == CURRENT.posix
        os.write(found, b"x")
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)  # on Windows `found` shares the handle: closed with it
    with pytest.raises(OSError):
        fd_from_env(fd_to_env(w))  # closed now


# --- processes ---------------------------------------------------------------------


def test_probe_reads_the_start_time_the_owner_and_zombies() -> None:
    me = probe(os.getpid())
    assert me is not None and not me.zombie
    assert abs(me.start_time - psutil.Process().create_time()) < 0.02
    assert probe(0) is None and probe(-1) is None


def test_psutils_view_used_off_linux_agrees_with_proc() -> None:
    here = probe(os.getpid())
    there = _procs._probe_psutil(os.getpid())
    assert here is not None and there is not None
    assert abs(here.start_time - there.start_time) < 0.02
    assert here.uid == there.uid


def test_a_pin_waits_for_the_exit_without_polling_and_kills() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        pin = ProcessPin.open(proc.pid)
        assert pin is not None
        with pin:
            assert not pin.wait(0.05)
            pin.kill()
            assert pin.wait(10.0)
            assert pin.has_exited()
            pin.kill()  # gone: not an error
    finally:
        proc.kill()
        proc.wait()


def test_a_pin_without_a_kernel_handle_asks_probe() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        pin = ProcessPin(proc.pid, None)  # a kernel (or Python) without pidfds
        assert not pin.wait(0.05)
        proc.terminate()
        assert pin.wait(10.0)
    finally:
        proc.kill()
        proc.wait()


def test_no_pin_for_a_process_that_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pin = ProcessPin.open(proc.pid)
    if pin is not None:  # the pid was reused meanwhile: then it is someone else's
        pin.close()


def test_the_environment_of_a_process_is_read() -> None:
    env = {**os.environ, "BICAMERAL_TEST_MARK": "yes"}
    proc = subprocess.Popen(SLEEPER, env=env)
    try:
        deadline = time.monotonic() + 10
        while True:  # the child's environment exists once it has exec'd
            seen = process_environ(proc.pid) or {}
            if seen.get("BICAMERAL_TEST_MARK") == "yes" or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert seen.get("BICAMERAL_TEST_MARK") == "yes"
    finally:
        proc.kill()
        proc.wait()


# --- locks -----------------------------------------------------------------------------


def test_a_lock_is_exclusive_and_dropped_with_its_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    first = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    second = os.open(path, os.O_RDWR)
    try:
        assert flock(first)
        assert not flock(second)
        if CURRENT.posix:  # a shared probe fails against it (the doctor's way to ask)
            assert not flock(second, shared=True)
        os.close(first)
        first = -1
        assert flock(second)
    finally:
        for fd in (first, second):
            if fd >= 0:
                os.close(fd)


# --- directory watch ----------------------------------------------------------------


def test_a_rename_into_the_directory_wakes_the_watch(tmp_path: Path) -> None:
    watch = DirectoryWatch(tmp_path, ["daemon.json"])
    try:
        (tmp_path / "tmp").write_text("{}")
        timer = threading.Timer(0.05, os.replace, (tmp_path / "tmp", tmp_path / "daemon.json"))
        timer.start()
        assert watch.wait(time.monotonic() + 10.0)
        timer.join()
    finally:
        watch.close()


# --- Unix sockets and descriptor passing (POSIX) -----------------------------------


@pytest.mark.posix("Unix sockets and SCM_RIGHTS")
def test_listener_credentials_and_passed_descriptors(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with unix_socket() as server:
        server.bind(path)
        server.listen(1)
        assert listener_of(path) == (os.getpid(), os.geteuid())  # type: ignore[attr-defined, unused-ignore]
    assert listener_of(path) is None  # nothing listens any more
    left, right = socket.socketpair()
    r, w = os.pipe()
    try:
        assert peer_uid(left) == os.geteuid()  # type: ignore[attr-defined, unused-ignore]
        send_fds(left, [r, w])
        _, ancdata, _, _ = right.recvmsg(1, fds_space(2))
        got = fds_from_ancillary(ancdata)
        assert len(got) == 2
        assert fd_opened_for(got[0], os.O_RDONLY) and not fd_opened_for(got[0], os.O_WRONLY)
        assert fd_opened_for(got[1], os.O_WRONLY)
        for fd in got:
            os.close(fd)
    finally:
        left.close()
        right.close()
        os.close(r)
        os.close(w)


@pytest.mark.windows_only("Windows has no AF_UNIX in CPython")
def test_unix_sockets_say_to_use_tcp_on_windows() -> None:
    with pytest.raises(OSError, match="TCP transport"):
        unix_socket()
