"""The readiness pipe, sd_notify and the lock, from both sides."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bicameral.daemon import DaemonError
from bicameral.daemon._lock import LockFile, read_holder
from bicameral.daemon._readiness import Notifier, read_readiness, watchdog_interval


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcr-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("send", "kind", "detail"),
    [
        (lambda n: n.ready(), "READY", ""),
        (
            lambda n: n.error("config.toml: bad\nsecond line"),
            "ERROR",
            "config.toml: bad second line",
        ),
        (lambda n: n.busy(42), "BUSY", "42"),
        (lambda n: n.close(), "EOF", ""),
    ],
)
def test_one_message_then_the_pipe_closes(send, kind: str, detail: str) -> None:  # type: ignore[no-untyped-def]
    r, w = os.pipe()
    notifier = Notifier(ready_fd=w, notify_socket=None)
    send(notifier)
    notifier.ready()  # a second message goes nowhere
    msg = read_readiness(r, 5.0)
    os.close(r)
    assert (msg.kind, msg.detail) == (kind, detail)


def test_a_silent_daemon_times_out() -> None:
    r, w = os.pipe()
    try:
        assert read_readiness(r, 0.05).kind == "TIMEOUT"
    finally:
        os.close(r)
        os.close(w)


def test_sd_notify_datagrams(tmp: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp / "notify"))
    sock.settimeout(5)
    n = Notifier(ready_fd=None, notify_socket=str(tmp / "notify"))
    n.ready()
    n.reloading()
    n.reloaded()
    n.watchdog()
    n.stopping()
    got = [sock.recv(4096) for _ in range(5)]
    sock.close()
    assert got[0] == b"READY=1"
    assert got[1].startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert got[2:] == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


def test_sd_notify_without_a_listener_is_harmless(tmp: Path) -> None:
    Notifier(ready_fd=None, notify_socket=str(tmp / "nobody")).ready()
    Notifier(ready_fd=None, notify_socket="@abstract-nobody-listens").ready()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None


def test_the_lock_is_exclusive_and_released_on_close(tmp: Path) -> None:
    path = tmp / "daemon.lock"
    first = LockFile.try_acquire(path)
    assert first is not None
    assert LockFile.try_acquire(path) is None
    assert read_holder(path) == os.getpid()
    first.release()
    second = LockFile.try_acquire(path)
    assert second is not None
    second.release()
    assert path.exists()  # never deleted


def test_adopting_an_inherited_lock_checks_it(tmp: Path) -> None:
    path = tmp / "daemon.lock"
    lock = LockFile.try_acquire(path)
    assert lock is not None
    dup = os.dup(lock.fileno())
    adopted = LockFile.adopt(dup, path)
    assert not os.get_inheritable(dup)
    lock.release()
    assert LockFile.try_acquire(path) is None  # the adopted copy still holds it
    adopted.release()
    other = tmp / "other"
    other.write_text("")
    fd = os.open(other, os.O_RDWR)
    with pytest.raises(DaemonError, match="is not"):
        LockFile.adopt(fd, path)
    os.close(fd)
