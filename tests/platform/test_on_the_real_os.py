"""What only the real OS can show: run where the marker says (CI covers the other two).

- POSIX: the reaper, run for real, ends what a dead daemon tagged; on macOS
  it notices the death by kqueue ``NOTE_EXIT`` alone (the pipe stays open).
- Windows: a ``.cmd`` found through PATHEXT runs; the state dir's ACL
  leaves the user alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from bicameral.platform import CURRENT, resolve_command, restrict_to_user
from bicameral.platform._reaper import REAPER_SCRIPT, TAG_ENV, reaper_argv

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _start_marker(pid: int) -> str:
    if CURRENT.linux:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        return stat[stat.rfind(b")") + 2 :].split()[19].decode()
    return f"{psutil.Process(pid).create_time():.6f}"


@pytest.mark.posix("the reaper: Job Objects do its work on Windows")
def test_the_reaper_ends_what_a_dead_daemon_tagged() -> None:
    home = tempfile.mkdtemp(prefix="bcr", dir="/tmp")
    daemon = subprocess.Popen(SLEEP)  # stands in for the daemon
    tag = f"{daemon.pid}:{_start_marker(daemon.pid)}:{home}"
    orphan = subprocess.Popen(SLEEP, env={**os.environ, TAG_ENV: tag}, start_new_session=True)
    untagged = subprocess.Popen(SLEEP)
    read_end, write_end = os.pipe()
    reaper = None
    try:
        assert REAPER_SCRIPT.is_file()
        argv = reaper_argv(sys.executable, home, tag, read_end)
        reaper = subprocess.Popen(argv, pass_fds=[read_end], stdin=subprocess.DEVNULL)
        os.close(read_end)
        read_end = -1
        daemon.kill()
        daemon.wait()
        if CURRENT.linux:
            # Linux listens to the pipe, whose write end only "the daemon" holds.
            os.close(write_end)
            write_end = -1
        # macOS: the pipe stays open here; NOTE_EXIT on the daemon's pid is enough.
        assert reaper.wait(timeout=30) == 0
        assert orphan.wait(timeout=10) is not None
        assert untagged.poll() is None  # no tag, no signal
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
        for proc in (daemon, orphan, untagged, reaper):
            if proc is not None:
                proc.kill()
                proc.wait()
        os.rmdir(home)


@pytest.mark.windows_only("PATHEXT and cmd.exe")
def test_a_cmd_found_through_pathext_runs(tmp_path: Path) -> None:
    (tmp_path / "hello.cmd").write_text("@echo hi %~1\r\n")
    env = {**os.environ, "PATH": f"{tmp_path};{os.environ.get('PATH', '')}"}
    argv = resolve_command(["hello", "there"], environ=env)
    assert Path(argv[0]) == tmp_path / "hello.cmd"
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "hi there"


@pytest.mark.windows_only("ACLs")
def test_a_state_dir_is_restricted_to_its_user(tmp_path: Path) -> None:
    state = tmp_path / "bicameral"
    state.mkdir()
    restrict_to_user(state)
    shown = subprocess.run(["icacls", str(state)], capture_output=True, text=True, check=True)
    # "C:\\...\\bicameral PC\\u:(OI)(CI)(F)", one line per entry, then a summary.
    entries = [line.strip() for line in shown.stdout.splitlines() if ":(" in line]
    user = os.environ["USERNAME"].lower()
    # One entry, this user's full control, inherited by files and directories;
    # nothing inherited from the parent ("(I)").
    assert len(entries) == 1, shown.stdout
    assert user in entries[0].lower() and "(OI)(CI)(F)" in entries[0], shown.stdout
    assert "(I)" not in shown.stdout
