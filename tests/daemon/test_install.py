"""`daemon install` and `daemon logs` (the service files themselves: tests/platform)."""

from __future__ import annotations

import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from .conftest import Home


def test_logs_shows_the_tail_of_daemon_log(home: Home) -> None:
    missing = home.cli("daemon", "logs")
    assert missing.code == 1
    assert "no log" in missing.stderr
    info = home.cli("daemon", "start").json
    assert home.cli("daemon", "stop").code == 0
    out = home.cli("daemon", "logs", "-n", "3")
    assert out.code == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    assert f"daemon pid {info['pid']} exited" in lines[-1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_written_by_print_passes_systemd_analyze_verify(home: Home) -> None:
    run = home.cli("daemon", "install", "--print")
    assert run.code == 0
    assert "WatchdogSec=" in run.stdout  # the daemon pings at half of it while healthy
    unit = home.path / "bicameral.service"
    unit.write_text(run.stdout)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr  # no unknown keys, no bad command


def test_logs_follow_prints_appended_lines_across_a_rotation(home: Home) -> None:
    log = home.path / "daemon.log"
    log.write_text("old 1\nold 2\n")
    proc = subprocess.Popen(
        home.argv("daemon", "logs", "-n", "1", "--follow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "old 2\n"
        with log.open("a") as f:
            f.write("new 1\nhalf")  # a line still being written is held back
        assert proc.stdout.readline() == "new 1\n"
        with log.open("a") as f:
            f.write(" done\n")
        assert proc.stdout.readline() == "half done\n"
        log.rename(home.path / "daemon.log.1")  # what the rotating handler does
        log.write_text("after rotation\n")
        assert proc.stdout.readline() == "after rotation\n"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()


def test_the_daemon_log_rotates_by_size_and_every_file_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from bicameral.daemon import _logging as _serve

    monkeypatch.setattr(_serve, "LOG_MAX_BYTES", 1000)
    handler = _serve.private_rotating_handler(tmp_path / "daemon.log")
    logger = logging.getLogger("bicameral.test.rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(100):
            logger.warning("line %03d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())
    assert "line 099" in (tmp_path / "daemon.log").read_text()


def test_install_writes_the_unit_atomically_and_uninstall_removes_it(home: Home) -> None:
    home.env["HOME"] = str(home.path)  # where ~/.config/systemd/user lives for this test
    unit = home.path / ".config" / "systemd" / "user" / "bicameral.service"
    run = home.cli("daemon", "install")
    assert run.code == 0, run.stderr
    assert str(unit) in run.stdout and "systemctl --user" in run.stdout
    text = unit.read_text()
    assert f"--home {home.path}" in text and "Type=notify" in text
    assert [p.name for p in unit.parent.iterdir()] == ["bicameral.service"]  # no temp file
    assert home.cli("daemon", "install").code == 0  # replacing is fine
    gone = home.cli("daemon", "uninstall")
    assert gone.code == 0 and f"removed {unit}" in gone.stdout
    assert not unit.exists()
    again = home.cli("daemon", "uninstall")
    assert again.code == 0 and "nothing to remove" in again.stdout


def test_the_unit_carries_the_installing_shells_path_and_never_replaces_another_home(
    home: Home, tmp_path: Path
) -> None:
    home.env["HOME"] = str(home.path)
    home.env["PATH"] = f"/opt/node/bin:{home.env.get('PATH', '/usr/bin')}"
    unit = home.path / ".config" / "systemd" / "user" / "bicameral.service"
    assert home.cli("daemon", "install").code == 0
    assert "Environment=" in unit.read_text() and "/opt/node/bin" in unit.read_text()
    other = tmp_path / "other-home"
    run = home.cli("--home", str(other), "daemon", "install")
    assert run.code == 1 and "already runs a daemon for another state dir" in run.stderr
    assert f"--home {home.path}" in unit.read_text()  # untouched


def test_logs_filter_by_server_and_since(home: Home) -> None:
    log = home.path / "daemon.log"
    log.write_text(
        "2020-01-01 10:00:00,000 INFO bicameral.mcp[1]: MCP server 'files' ready\n"
        "2026-01-01 10:00:00,000 WARNING bicameral.mcp[1]: MCP server 'git': exited\n"
        "2026-01-01 10:00:01,000 ERROR bicameral.supervisor[1]: supervisor 'files': crashed\n"
        "Traceback (most recent call last):\n"
        "  File x\n"
        "2026-01-01 10:00:02,000 INFO bicameral.mcp.server.files[1]: hello from stderr\n"
    )
    out = subprocess.run(
        home.argv("daemon", "logs", "--server", "files"),
        capture_output=True,
        text=True,
        env=home.env,
        check=False,
    )
    assert out.returncode == 0, out
    assert "'git'" not in out.stdout
    assert out.stdout.count("files") == 3 and "Traceback" in out.stdout
    out = subprocess.run(
        home.argv("daemon", "logs", "--since", "2025-06-01"),
        capture_output=True,
        text=True,
        env=home.env,
        check=False,
    )
    assert "2020-01-01" not in out.stdout and "2026-01-01 10:00:00" in out.stdout
    bad = subprocess.run(
        home.argv("daemon", "logs", "--since", "yesterday-ish"),
        capture_output=True,
        text=True,
        env=home.env,
        check=False,
    )
    assert bad.returncode == 1 and "give a duration" in bad.stderr


def test_logs_follow_waits_for_a_log_that_does_not_exist_yet(home: Home) -> None:
    log = home.path / "daemon.log"
    assert not log.exists()
    proc = subprocess.Popen(
        home.argv("daemon", "logs", "--follow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    assert proc.stdout is not None
    try:
        log.write_text("first line\n")
        assert proc.stdout.readline() == "first line\n"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def test_log_level_warning_keeps_info_out_of_the_daemon_log(home: Home) -> None:
    assert home.cli("daemon", "start", "--log-level", "warning").code == 0
    home.cli("daemon", "stop")
    assert "INFO" not in (home.path / "daemon.log").read_text()
