"""``bicameral doctor`` through the real CLI, on broken and healthy setups."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bicameral.testing import BicameralDaemon

LIGHTSERVER = str(Path(__file__).parent.parent / "mcp" / "servers" / "lightserver.py")


def doctor(home: Path, *args: str, tty: bool = False) -> tuple[int, str, str]:
    """Run ``bicameral --home HOME doctor ARGS``: exit code, stdout, stderr."""
    argv = [sys.executable, "-m", "bicameral", "--home", str(home), "doctor", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL_")}
    if not tty:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        return proc.returncode, proc.stdout, proc.stderr
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            argv,
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return proc.returncode, b"".join(chunks).decode().replace("\r\n", "\n"), proc.stderr


def by_name(stdout: str) -> dict[str, dict[str, Any]]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    data = json.loads(lines[0])
    assert set(data) >= {"ok", "checks"}
    for check in data["checks"]:
        assert set(check) == {"name", "status", "message", "fix"}
        assert check["status"] in ("ok", "warning", "problem")
    return {c["name"]: c for c in data["checks"]} | {"_ok": {"ok": data["ok"]}}


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bdoc-"))
    try:
        yield path
    finally:
        path.chmod(0o700)
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_broken_setup_names_each_problem(home: Path) -> None:
    home.chmod(0o777)
    descriptor = {
        "descriptor_version": 1,
        "pid": dead_pid(),
        "socket_path": str(home / "daemon.sock"),
        "started_at": "2026-11-24T14:15:10Z",
        "process_start_time": 1.0,
        "daemon_version": "0.1.0",
        "protocol_version": "1",
        "log_path": None,
    }
    (home / "daemon.json").write_text(json.dumps(descriptor))
    (home / "config.toml").write_text(
        '[mcp.servers.gone]\ncommand = "bicameral-no-such-server"\n\n'
        f"[mcp.servers.here]\ncommand = {json.dumps(sys.executable)}\n"
    )
    long_socket = home / ("s" * 120 + ".sock")
    code, stdout, stderr = doctor(home, "--socket", str(long_socket))
    assert code == 1, stderr
    assert "Traceback" not in stderr
    checks = by_name(stdout)
    assert checks["_ok"]["ok"] is False

    state = checks["state-dir"]
    assert state["status"] == "problem"
    assert "writable by group or others (mode 0777)" in state["message"]
    assert state["fix"] == f"chmod 700 {home}"

    socket = checks["socket-path"]
    assert socket["status"] == "warning"
    assert "over the AF_UNIX limit of 107" in socket["message"]
    assert "fallback" in socket["message"]

    stale = checks["descriptor"]
    assert stale["status"] == "warning"
    assert f"pid {descriptor['pid']} is not running" in stale["message"]
    assert "bicameral daemon stop" in stale["fix"]

    missing = checks["mcp-server:gone"]
    assert missing["status"] == "problem"
    assert "'bicameral-no-such-server' is not on PATH" in missing["message"]
    assert checks["mcp-server:here"]["status"] == "ok"
    assert checks["daemon"]["status"] == "ok"  # not running is not a problem


def test_invalid_config_and_a_server_env_path(home: Path) -> None:
    (home / "config.toml").write_text('[mcp.servers.files]\ncommand = "npx"\narg = ["-y"]\n')
    code, stdout, stderr = doctor(home, "--json")
    assert code == 1
    assert "Traceback" not in stderr
    config = by_name(stdout)["config"]
    assert config["status"] == "problem"
    assert "[mcp.servers.files] unknown key 'arg'" in config["message"]

    # A command found only through the server's own env PATH counts as found.
    bin_dir = home / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "my-server"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o700)
    (home / "config.toml").write_text(
        f'[mcp.servers.mine]\ncommand = "my-server"\nenv = {{ PATH = "{bin_dir}" }}\n'
    )
    (home / "config.toml").chmod(0o600)
    code, stdout, _ = doctor(home, "--json")
    checks = by_name(stdout)
    assert code == 0, stdout
    assert checks["mcp-server:mine"]["message"] == f"server 'mine': my-server is {tool}"


def test_readable_output_on_a_terminal(home: Path) -> None:
    (home / "config.toml").write_text("[mcp.servers.x]\ncommand = [1]\n")
    code, stdout, stderr = doctor(home, tty=True)
    assert code == 1
    assert "Traceback" not in stderr
    lines = stdout.splitlines()
    assert lines[0] == f"bicameral doctor: {home}"
    problem = next(i for i, line in enumerate(lines) if line.lstrip().startswith("PROBLEM"))
    assert '"command" must be a string' in lines[problem]
    assert lines[problem + 1].strip().startswith("fix: edit ")
    assert lines[-1].endswith("1 problem(s)")


def test_healthy_setup_with_a_running_daemon(bicameral_daemon: BicameralDaemon) -> None:
    bicameral_daemon.configure({"echo": {"command": sys.executable, "args": [LIGHTSERVER]}})
    pid = bicameral_daemon.pid
    code, stdout, stderr = doctor(bicameral_daemon.home)
    checks = by_name(stdout)
    assert code == 0, stdout + stderr
    assert checks["_ok"]["ok"] is True
    assert all(c["status"] == "ok" for n, c in checks.items() if n != "_ok"), stdout
    assert (
        f"daemon pid {pid} answers on {bicameral_daemon.socket_path}"
        in (checks["daemon"]["message"])
    )
    assert checks["lock"]["message"].endswith(f"held by daemon pid {pid}")
    assert checks["descriptor"]["message"].endswith(f"names daemon pid {pid}")
    assert checks["mcp-server:echo"]["message"] == f"server 'echo': {sys.executable} is " + (
        sys.executable
    )


def test_a_degraded_then_unresponsive_daemon(bicameral_daemon: BicameralDaemon) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    bicameral_daemon.configure({"bad": {"command": failing[0], "args": failing[1:]}})
    pid = bicameral_daemon.pid
    # The daemon is another process: its health can only be asked, so ask
    # until the failing server shows (bounded).
    deadline = time.monotonic() + 20
    while not (bicameral_daemon.call("adapters.list")[0].get("started_value") or {}).get(
        "last_error"
    ):
        assert time.monotonic() < deadline, "the failing server never showed in the health"
        time.sleep(0.05)
    code, stdout, _ = doctor(bicameral_daemon.home)
    daemon = by_name(stdout)["daemon"]
    assert code == 0, stdout  # degraded is a warning: the daemon serves the others
    assert daemon["status"] == "warning"
    assert "adapters/bad: " in daemon["message"]
    assert "(last error: exited with status 3)" in daemon["message"]

    os.kill(pid, signal.SIGSTOP)
    try:
        code, stdout, stderr = doctor(bicameral_daemon.home)
    finally:
        os.kill(pid, signal.SIGCONT)
    daemon = by_name(stdout)["daemon"]
    assert code == 1
    assert "Traceback" not in stderr
    assert daemon["status"] == "problem"
    assert f"daemon pid {pid} is running but not answering" in daemon["message"]
    assert "bicameral daemon restart" in daemon["fix"]


def test_a_lock_held_without_a_daemon(home: Path) -> None:
    from bicameral.daemon._lock import LockFile

    with LockFile.try_acquire(home / "daemon.lock") as lock:
        assert lock is not None
        code, stdout, _ = doctor(home)
    held = by_name(stdout)["lock"]
    assert code == 0
    assert held["status"] == "warning"
    assert (
        f"held by pid {os.getpid()} but no descriptor names a running daemon" in (held["message"])
    )
    _, stdout, _ = doctor(home)
    free = by_name(stdout)["lock"]
    assert free["status"] == "ok"
    assert "held by no process: that is fine" in free["message"]


def test_doctor_creates_nothing(home: Path) -> None:
    missing = home / "not-yet"
    code, stdout, _ = doctor(missing)
    assert code == 0
    assert "does not exist yet" in by_name(stdout)["state-dir"]["message"]
    assert not missing.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the dir to another user")
def test_a_state_dir_owned_by_another_user(home: Path) -> None:
    os.chown(home, 65534, 65534)
    try:
        code, stdout, _ = doctor(home)
    finally:
        os.chown(home, 0, 0)
    state = by_name(stdout)["state-dir"]
    assert code == 1
    assert state["status"] == "problem"
    assert "is owned by uid 65534, not by you (uid 0)" in state["message"]


def test_remote_servers_are_checked_as_remote_servers(home: Path) -> None:
    """A `url` server is no PROBLEM for its lack of a command; what can be wrong
    with it (an unset ${env:...}, a login never done) is said with its own fix."""
    home.chmod(0o700)
    (home / "config.toml").write_text(
        "[mcp.servers.linear]\n"
        'url = "https://mcp.linear.app/mcp"\n'
        'headers = { "X-Team" = "core" }\n'
        "[mcp.servers.keyed]\n"
        'url = "https://example.com/mcp"\n'
        'auth = "bearer"\n'
        'token = "${env:BICAMERAL_TEST_UNSET_TOKEN}"\n'
        "[mcp.servers.sso]\n"
        'url = "https://example.com/sso/mcp"\n'
        'auth = "oauth"\n'
    )
    (home / "config.toml").chmod(0o600)
    code, stdout, stderr = doctor(home, "--json")
    checks = by_name(stdout)
    assert "Traceback" not in stderr
    linear = checks["mcp-server:linear"]
    assert linear["status"] == "ok", linear
    assert "https://mcp.linear.app/mcp" in linear["message"]
    keyed = checks["mcp-server:keyed"]
    assert keyed["status"] == "problem", keyed
    assert "BICAMERAL_TEST_UNSET_TOKEN" in keyed["message"] and "command" not in keyed["message"]
    sso = checks["mcp-server:sso"]
    assert sso["status"] == "warning", sso
    assert "bicameral mcp login sso" in (sso["fix"] or ""), sso
    assert code == 1  # the unset token is a problem; nothing else is
