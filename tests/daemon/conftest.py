"""Fixtures for the daemon tests: a short private state dir, a CLI runner, a leak check.

Lifecycle tests drive the real CLI (``python -m bicameral ...``) against a real
daemon in a directory under ``/tmp`` (pytest's ``tmp_path`` is too long for an
AF_UNIX path). Every test ends with nothing left behind: the ``home`` fixture
kills any daemon the test left running, and fails the test if it had to, or if
a descriptor, a socket or a held lock remains.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bicameral.daemon._identity import probe
from bicameral.daemon._lock import LockFile, read_holder

HERE = Path(__file__).parent


class Run:
    """A finished CLI invocation."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def json(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data

    def __repr__(self) -> str:
        return f"Run(code={self.code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class Home:
    """A private state dir plus helpers to run the CLI against it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = dict(os.environ)
        self.env.pop("BICAMERAL_HOME", None)
        self.env.pop("NOTIFY_SOCKET", None)
        self.pids: set[int] = set()

    @property
    def descriptor(self) -> Path:
        return self.path / "daemon.json"

    @property
    def socket(self) -> Path:
        return self.path / "daemon.sock"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bicameral", "--home", str(self.path), *args]

    def cli(self, *args: str, timeout: float = 30.0) -> Run:
        proc = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        run = Run(proc)
        self._remember(run)
        return run

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        options: dict[str, Any] = {
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "stdin": subprocess.DEVNULL,
            "text": True,
            "env": self.env,
        }
        options.update(kwargs)
        return subprocess.Popen(self.argv(*args), **options)

    def _remember(self, run: Run) -> None:
        try:
            pid = json.loads(run.stdout).get("pid")
        except (ValueError, AttributeError):
            return
        if isinstance(pid, int):
            self.pids.add(pid)

    def read_descriptor(self) -> dict[str, Any]:
        data = json.loads(self.descriptor.read_text())
        assert isinstance(data, dict)
        if isinstance(data.get("pid"), int):
            self.pids.add(data["pid"])
        return data

    def write_config(self, text: str) -> None:
        (self.path / "config.toml").write_text(text)

    def install_test_plugin(self) -> None:
        """Make the daemon find tests/daemon/_testplugin.py as a `bicameral.plugins` entry point."""
        install_plugin(self.path, self.env, HERE / "_testplugin.py", "test")


def install_plugin(home: Path, env: dict[str, str], source: Path, name: str) -> None:
    """Make daemons started with ``env`` load ``source`` as plugin entry point ``name``.

    A throwaway distribution (module + dist-info) under ``home/site`` on
    ``PYTHONPATH``: the daemon discovers it exactly as it would an installed one.
    """
    site = home / "site"
    site.mkdir(exist_ok=True)
    module = f"bicameral_{name}plugin"
    shutil.copy(source, site / f"{module}.py")
    dist = site / f"bicameral_{name}plugin-0.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: bicameral-{name}plugin\n")
    (dist / "entry_points.txt").write_text(f"[bicameral.plugins]\n{name} = {module}:plugin\n")
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def alive(pid: int) -> bool:
    info = probe(pid)
    return info is not None and not info.zombie


def leftovers(home: Home) -> list[str]:
    """What a finished test left behind, killing any daemon it left running."""
    problems: list[str] = []
    holder = read_holder(home.path / "daemon.lock")
    if holder is not None:
        home.pids.add(holder)  # the lock file names its last holder
    for pid in sorted(home.pids):
        info = probe(pid)
        if info is None or info.zombie:
            continue
        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if "bicameral.daemon" in cmdline:
            os.kill(pid, signal.SIGKILL)
            problems.append(f"daemon pid {pid} still running")
    for name in ("daemon.json", "daemon.sock"):
        if (home.path / name).exists():
            problems.append(f"{name} left behind")
    lock_path = home.path / "daemon.lock"
    if lock_path.exists():
        lock = LockFile.try_acquire(lock_path)
        if lock is None:
            problems.append("daemon.lock still held")
        else:
            lock.release()
    return problems


@pytest.fixture
def home() -> Iterator[Home]:
    path = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    h = Home(path)
    try:
        yield h
        problems = leftovers(h)
        assert not problems, problems
    finally:
        leftovers(h)
        shutil.rmtree(path, ignore_errors=True)
