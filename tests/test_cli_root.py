"""The root command: version and help, through the real console script."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil

import bicameral


def test_version_prints_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bicameral", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"bicameral {bicameral.__version__}"


def test_ctrl_c_during_start_exits_130_without_a_traceback() -> None:
    from pathlib import Path

    from tests.daemon.conftest import install_plugin

    home = tempfile.mkdtemp(dir="/tmp", prefix="bcc")
    # Readiness never waits for MCP servers: a plugin whose adapter takes
    # seconds to start makes the start slow enough to press Ctrl-C.
    env = dict(os.environ)
    probe = Path(__file__).parent / "hardening" / "_probeplugin.py"
    install_plugin(Path(home), env, probe, "probe")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write("[probe]\nstart_delay = 60\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bicameral", "--home", home, "daemon", "start", "--wait", "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(home, "daemon.log")):
            assert time.monotonic() < deadline, "the daemon was never spawned"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(
            [sys.executable, "-m", "bicameral", "--home", home, "daemon", "stop", "--timeout", "1"],
            capture_output=True,
            check=False,
        )
        for p in psutil.process_iter(["cmdline"]):
            if home in " ".join(p.info["cmdline"] or []):
                p.kill()
        shutil.rmtree(home, ignore_errors=True)


def test_usage_errors_are_one_line_with_exit_2_everywhere() -> None:
    for argv, expected in (
        (["bogus"], "No such command 'bogus'"),
        (["daemon", "stopp"], "Did you mean 'stop'?"),
        (["daemon", "status", "--timeout", "-1"], "Invalid value for '--timeout'"),
        (["--homer", "x", "daemon", "status"], "No such option: --homer"),
        (["mcp", "add"], "Missing argument 'NAME'"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "bicameral", *argv], capture_output=True, text=True, check=False
        )
        assert run.returncode == 2, (argv, run)
        assert run.stderr.startswith("bicameral: error: "), run.stderr
        assert expected in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    # A group named alone still prints its help.
    run = subprocess.run(
        [sys.executable, "-m", "bicameral", "daemon"], capture_output=True, text=True, check=False
    )
    assert "Usage: bicameral daemon" in run.stdout + run.stderr


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL_")}
    return subprocess.run(
        [sys.executable, "-m", "bicameral", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_an_empty_home_is_an_error_never_the_current_directory() -> None:
    for args, env in (
        (("--home", "", "daemon", "status"), None),
        (("--home=", "daemon", "status"), None),
        (("daemon", "status"), {"BICAMERAL_HOME": ""}),
    ):
        out = _cli(*args, env=env)
        assert out.returncode == 4, out
        assert "empty" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out
        assert '"status": "unknown"' in out.stdout
    start = _cli("daemon", "start", env={"BICAMERAL_HOME": ""})
    assert start.returncode == 2, start
    assert '"status": "failed"' in start.stdout
    assert not os.path.exists("daemon.json")


def test_a_state_dir_below_a_regular_file_is_status_4_not_stopped() -> None:
    top = tempfile.mkdtemp(dir="/tmp", prefix="bcf")
    try:
        blocker = os.path.join(top, "file")
        open(blocker, "w").close()
        out = _cli("--home", os.path.join(blocker, "sub"), "daemon", "status")
        assert out.returncode == 4, out
        assert "Not a directory" in out.stderr
    finally:
        shutil.rmtree(top)


def test_an_empty_home_is_an_error_on_every_command() -> None:
    """`--home ""` and `BICAMERAL_HOME=` never mean the current directory (SPEC §4)."""
    cwd = tempfile.mkdtemp(dir="/tmp", prefix="bce")
    commands = [
        ("mcp", "list"),
        ("mcp", "ps"),
        ("mcp", "add", "x", "--", "ls"),
        ("mcp", "remove", "x"),
        ("mcp", "import", "nope.json"),
        ("mcp", "restart", "x"),
        ("mcp", "http"),
        ("mcp", "--server=x"),
        ("mcp",),
        ("doctor",),
        ("daemon", "logs"),
        ("daemon", "reload"),
        ("daemon", "stop"),
        ("daemon", "install", "--print"),
    ]
    try:
        for words in commands:
            for args, env in (
                (("--home", "", *words), None),
                (words, {"BICAMERAL_HOME": ""}),
            ):
                out = subprocess.run(
                    [sys.executable, "-m", "bicameral", *args],
                    capture_output=True,
                    text=True,
                    env={
                        **{k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL_")},
                        **(env or {}),
                    },
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    timeout=60,
                    check=False,
                )
                assert out.returncode in (1, 2), (args, env, out)
                assert "empty" in out.stderr, (args, env, out)
                assert "Traceback" not in out.stderr, (args, env, out)
                assert len(out.stderr.strip().splitlines()) == 1, (args, env, out)
            assert os.listdir(cwd) == [], (words, os.listdir(cwd))
    finally:
        shutil.rmtree(cwd)
