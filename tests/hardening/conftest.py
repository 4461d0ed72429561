"""Fixtures for the hardening tests: real daemons in short state dirs, raw sockets, probes.

Every test here talks to a real daemon process, started through the real CLI
(``python -m bicameral --home DIR daemon start``) in a directory under
``/tmp`` (pytest's ``tmp_path`` is too long for an AF_UNIX path). The
``home`` fixture kills whatever daemon a test left running and fails the test
if it had to, or if a descriptor, a socket or a held lock remains.

Waiting is done on conditions with a deadline (`wait_for`), never with a bare
sleep: the machine is shared, so the deadlines are generous and the checks
cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bicameral.daemon._lock import LockFile, read_holder
from tests.daemon.conftest import Home as BaseHome
from tests.daemon.conftest import alive, install_plugin

LIGHTSERVER = str(Path(__file__).parents[1] / "mcp" / "servers" / "lightserver.py")
BICAMERAL = str(Path(sys.executable).with_name("bicameral"))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``condition`` every few ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def fd_count(pid: int) -> int:
    return int(psutil.Process(pid).num_fds())


def rss_kib(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss) // 1024


def _cmdlines() -> list[tuple[int, list[str]]]:
    """(pid, argv) of every process whose command line can be read."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"]
        if cmdline:
            found.append((proc.pid, cmdline))
    return found


def daemon_pids(home: Path) -> list[int]:
    """Live daemon processes whose command line names ``home`` (zombies excluded)."""
    found = []
    for pid, cmdline in _cmdlines():
        if "bicameral.daemon" in cmdline and str(home) in cmdline and alive(pid):
            found.append(pid)
    return sorted(found)


class Home(BaseHome):
    """The daemon suite's `Home`, with no ``BICAMERAL*`` variable inherited at all."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BICAMERAL", "NOTIFY_SOCKET"))
        }

    @property
    def lock(self) -> Path:
        return self.path / "daemon.lock"

    @property
    def log(self) -> Path:
        return self.path / "daemon.log"

    def start(self) -> int:
        run = self.cli("daemon", "start")
        assert run.code == 0, run
        pid = run.json["pid"]
        assert isinstance(pid, int)
        return pid

    def stop(self) -> None:
        run = self.cli("daemon", "stop")
        assert run.code == 0, run

    def configure(self, text: str) -> None:
        path = self.path / "config.toml"
        path.write_text(text)
        path.chmod(0o600)

    def test_servers(self, *names: str) -> str:
        """config.toml text running the MCP test server under each name."""
        lines = []
        for name in names:
            lines += [
                f"[mcp.servers.{name}]",
                f"command = {json.dumps(sys.executable)}",
                f"args = {json.dumps([LIGHTSERVER, '--name', name, '--home-tag', str(self.path)])}",
            ]
        return "\n".join(lines) + "\n"

    def install_probe_plugin(self) -> None:
        """Make the daemon load ``_probeplugin.py`` as a ``bicameral.plugins`` entry point."""
        install_plugin(self.path, self.env, Path(__file__).parent / "_probeplugin.py", "probe")

    def upstream_pids(self) -> list[int]:
        """Live MCP test servers started for this home (tagged with its path)."""
        found = []
        for pid, args in _cmdlines():
            if "--home-tag" in args and str(self.path) in args and alive(pid):
                found.append(pid)
        return sorted(found)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(self.socket))
        return sock


def leftovers(home: Home) -> list[str]:
    """What a finished test left behind, killing any daemon or upstream it left running."""
    problems: list[str] = []
    pids = set(daemon_pids(home.path))
    holder = read_holder(home.lock)
    if holder is not None and alive(holder):
        with contextlib.suppress(psutil.Error):
            if "bicameral.daemon" in psutil.Process(holder).cmdline():
                pids.add(holder)
    for pid in sorted(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        problems.append(f"daemon pid {pid} still running")
    for pid in home.upstream_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not pids:  # a killed daemon's upstreams die with it (parent-death signal)
            problems.append(f"upstream pid {pid} still running")
    for name in ("daemon.json", "daemon.sock"):
        if os.path.lexists(home.path / name):
            problems.append(f"{name} left behind")
    if home.lock.exists():
        lock = LockFile.try_acquire(home.lock)
        if lock is None:
            problems.append("daemon.lock still held")
        else:
            lock.release()
    return problems


def new_home() -> Home:
    path = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    path.chmod(0o700)
    return Home(path)


@pytest.fixture
def home() -> Iterator[Home]:
    h = new_home()
    try:
        yield h
        if h.descriptor.exists() and daemon_pids(h.path):
            h.cli("daemon", "stop", "--timeout", "5")
        problems = leftovers(h)
        assert not problems, problems
    finally:
        leftovers(h)
        shutil.rmtree(h.path, ignore_errors=True)


# --- raw JSON-RPC on a socket ------------------------------------------------------


def send_lines(sock: socket.socket, *messages: Any) -> None:
    sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))


def read_lines(sock: socket.socket, count: int, buffer: bytearray | None = None) -> list[Any]:
    """Read ``count`` JSON lines (the socket's timeout bounds each recv)."""
    buf = buffer if buffer is not None else bytearray()
    out: list[Any] = []
    while len(out) < count:
        end = buf.find(b"\n")
        if end >= 0:
            line = bytes(buf[:end])
            del buf[: end + 1]
            if line.strip():
                out.append(json.loads(line))
            continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {count} lines")
        buf += chunk
    return out


def rpc(sock: socket.socket, method: str, params: Any = None, msg_id: Any = 1) -> Any:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    send_lines(sock, message)
    (reply,) = read_lines(sock, 1)
    return reply
