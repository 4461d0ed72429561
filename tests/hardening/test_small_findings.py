"""The smaller findings of issue 30 (finding 9): leftovers, a stop, a crash's log.

The descriptor-table item (servers that start during a flood) is in
test_http_listener.py, with the flood; the duplicate ``Origin`` and the
``/metrics`` Host check are there too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bicameral.daemon._lock import LockFile
from tests.mcp._support import session, text
from tests.mcp.conftest import McpHome, mcp_home  # noqa: F401  (the fixture)

from .conftest import wait_for


@pytest.fixture
def home(mcp_home: McpHome) -> Iterator[McpHome]:  # noqa: F811
    yield mcp_home


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_config_files_of_interrupted_edits_are_swept(home: McpHome) -> None:
    """A SIGKILLed edit leaves ``.config.toml.<pid>.<random>.tmp``: the next edit
    removes it, and so does the next start; a live writer's is left alone."""
    home.configure({"alpha": home.light_server("alpha")})
    left = home.path / f".config.toml.{dead_pid()}.1a2b3c4d.tmp"
    left.write_text("half a config")
    live = home.path / f".config.toml.{os.getpid()}.5e6f7a8b.tmp"
    live.write_text("being written")
    added = home.cli("mcp", "add", "beta", "--", sys.executable, "-c", "pass")
    assert added.returncode == 0, added.stderr
    assert not left.exists() and live.exists()
    left.write_text("half a config")
    assert home.cli("daemon", "start").returncode == 0
    assert not left.exists() and live.exists()
    assert "interrupted edit" in (home.path / "daemon.log").read_text()
    live.unlink()


def test_status_while_the_lock_is_held_without_a_descriptor_says_so(home: McpHome) -> None:
    """During a stop the descriptor goes before the lock: `status` says the
    daemon is starting or stopping, not "not answering: None"."""
    lock = LockFile.try_acquire(home.path / "daemon.lock")
    assert lock is not None
    try:
        code, said = on_a_terminal(home, "daemon", "status")
    finally:
        lock.release()
    assert code == 4
    assert "None" not in said, said
    assert "starting or stopping" in said, said


def on_a_terminal(home: McpHome, *args: str) -> tuple[int, str]:
    """Run the CLI with its output on a pseudo-terminal (what a person sees)."""
    import pty

    from tests.mcp.conftest import BICAMERAL

    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [BICAMERAL, "--home", str(home.path), *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=home.env,
            timeout=30,
            check=False,
        )
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return done.returncode, out.decode(errors="replace")


async def test_a_server_crash_is_logged_in_one_line_without_a_traceback(home: McpHome) -> None:
    home.configure({"alpha": home.light_server("alpha")})
    async with session(home, "alpha") as client:
        assert text(await client.call_tool("echo", {"text": "up"})) == "up"
        (first,) = [p.pid for p in home.upstreams()]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: [p.pid for p in home.upstreams()] not in ([], [first]), 30, "a restart")
    log = (home.path / "daemon.log").read_text()
    assert "'alpha'" in log and "SIGKILL" in log, log[-2000:]  # one line naming it and why
    assert "Traceback" not in log, log[-3000:]
