"""The reaper's process table: ``/proc`` on Linux, psutil on macOS.

The macOS branch is psutil's process list and each process's environment,
which psutil offers on Linux too: with ``sys.platform`` set to ``darwin``
for the duration of a call, that branch runs here and must find exactly
what ``/proc`` finds. The kqueue wait is macOS's own (CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil  # noqa: F401 - imported before sys.platform is patched: it picks its backend once
import pytest

from bicameral.platform import _reaper, _reaper_main

pytestmark = pytest.mark.linux_only("compares the macOS branch against /proc")


def _tagged_child(tag: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, _reaper.TAG_ENV: tag}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)


def _as(platform: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", platform)


def test_the_macos_branch_finds_what_proc_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    home = b"/tmp/reaper-test-home"
    mine = f"{os.getpid()}:x:{home.decode()}".encode()
    dead = b"999999999:y:" + home  # a predecessor daemon that is gone
    children = [_tagged_child(mine.decode()), _tagged_child(dead.decode())]
    try:
        deadline = time.monotonic() + 10
        while len(_reaper_main._tagged(mine, home)) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the children's environments exist once they exec
        linux_own = _reaper_main._tagged(mine, home)
        linux_dead = _reaper_main._tagged(None, home)
        with monkeypatch.context() as patch:
            _as("darwin", patch)
            macos_own = _reaper_main._tagged(mine, home)
            macos_dead = _reaper_main._tagged(None, home)
        assert linux_own == [children[0].pid] and sorted(macos_own) == linux_own
        assert children[1].pid in linux_dead and sorted(macos_dead) == sorted(linux_dead)
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_the_start_marker_is_read_back_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # Linux: clock ticks from /proc; macOS: psutil's creation time, to the microsecond.
    assert _reaper_main._start_of(os.getpid()) == _reaper._own_start().encode()
    with monkeypatch.context() as patch:
        _as("darwin", patch)
        written = _reaper._own_start()
        assert "." in written  # seconds.microseconds
        assert _reaper_main._start_of(os.getpid()) == written.encode()
        assert _reaper_main._daemon_alive(str(os.getpid()).encode(), written.encode())
        assert not _reaper_main._daemon_alive(b"999999999", written.encode())
