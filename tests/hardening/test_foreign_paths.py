"""A state dir another user could redirect is never used (SPEC §4).

OpenSSH's StrictModes, applied to the state dir: a directory or symlink on
the way to it that another (non-root) user owns or can write is refused,
and a daemon whose state dir's path was swapped after it started refuses to
reload from it. The attack these tests replay ran another user's command as
root. They need root to create that second user, and remove it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BICAMERAL, wait_for

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd, to create a second user",
)


@pytest.fixture
def other_user() -> Iterator[tuple[str, int]]:
    name = f"bc{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", name], check=True, capture_output=True)
    try:
        import pwd

        yield name, pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def cli(home: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL_")}
    return subprocess.run(
        [BICAMERAL, "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_state_dir_below_another_users_directory_is_refused(
    other_user: tuple[str, int],
) -> None:
    _, uid = other_user
    top = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    try:
        theirs = top / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, uid, uid)
        home = theirs / "par" / "st"
        home.parent.mkdir(mode=0o755)
        home.mkdir(mode=0o700)
        for command in (("daemon", "start"), ("mcp", "add", "x", "--", "true")):
            out = cli(home, *command)
            assert out.returncode in (1, 2), out
            assert f"reached through directory {theirs}, owned by uid {uid}" in out.stderr, out
            assert "Traceback" not in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (home / "daemon.json").exists()
        status = cli(home, "daemon", "status")
        assert status.returncode == 4, status
        # Through a symlink the other user owns: the same.
        link = top / "link"
        link.symlink_to(home)
        os.lchown(link, uid, uid)
        out = cli(link, "daemon", "start")
        assert out.returncode == 1 and f"symlink {link}" in out.stderr, out
    finally:
        shutil.rmtree(top)


def test_a_state_dir_swapped_after_start_is_never_read_on_reload(tmp_path: Path) -> None:
    """Renaming the state dir and putting another in its place: SIGHUP does not
    make the daemon read (and run) the impostor's config.toml."""
    top = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    marker = top / "MARKER"
    try:
        home = top / "st"
        assert cli(home, "daemon", "start").returncode == 0
        pid = int(cli(home, "daemon", "status", "--json").stdout.split('"pid": ')[1].split(",")[0])
        home.rename(top / "moved")
        impostor = top / "st"
        impostor.mkdir(mode=0o700)
        (impostor / "config.toml").write_text(
            f'[mcp.servers.evil]\ncommand = "/bin/sh"\nargs = ["-c", "id > {marker}; sleep 3600"]\n'
        )
        log = top / "moved" / "daemon.log"
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), what="the reload to be refused")
        assert "was replaced since the daemon started" in log.read_text()
        assert not marker.exists()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "exited" in log.read_text())
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert sys.platform  # (keeps the import used on every platform)


def test_a_daemon_whose_state_dir_was_swapped_writes_nothing_at_the_old_path() -> None:
    """SPEC §4: once started, every file (the socket included) is made in the
    directory the daemon opened, never at the path that now names another one.

    The socket file in the moved directory is deleted too, so the daemon has a
    reason to bind it again: it must do so in the directory it holds.
    """
    top = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    try:
        home = top / "st"
        assert cli(home, "daemon", "start").returncode == 0
        pid = int(cli(home, "daemon", "status", "--json").stdout.split('"pid": ')[1].split(",")[0])
        moved = top / "moved"
        home.rename(moved)
        home.mkdir(mode=0o700)
        (moved / "daemon.sock").unlink()
        log = moved / "daemon.log"
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), what="the reload to be refused")
        wait_for(
            lambda: "listening there again" in log.read_text(),
            timeout=20,
            what="the daemon to bind its deleted socket again",
        )
        assert (moved / "daemon.sock").is_socket(), "bound again, but not where the daemon lives"
        assert sorted(os.listdir(home)) == [], "the daemon wrote at its old path"
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: f"daemon pid {pid} exited" in log.read_text(), what="the daemon to exit")
        assert sorted(os.listdir(home)) == []
        assert not (moved / "daemon.sock").exists() and not (moved / "daemon.json").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)
