"""Fixtures for the MCP tests: a private state directory with a real daemon."""

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

from tests.mcp._support import LIGHTSERVER, TESTSERVER

BICAMERAL = str(Path(sys.executable).with_name("bicameral"))


class McpHome:
    """A short state directory (AF_UNIX paths are limited) and its daemon.

    Every upstream server it configures carries the directory in its command
    line, so the teardown can prove none outlived the test.
    """

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcm"))
        self.path.chmod(0o700)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BICAMERAL", "PYTEST"))
        }

    def configure(self, servers: dict[str, dict[str, Any]], daemon: str = "") -> None:
        """config.toml with `servers`, after `daemon` (``[daemon.*]`` tables, as TOML text)."""
        lines = [daemon] if daemon else []
        for name, table in servers.items():
            lines.append(f"[mcp.servers.{name}]")
            for key, value in table.items():
                if isinstance(value, dict):
                    inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                    lines.append(f"{key} = {{ {inner} }}")
                else:
                    lines.append(f"{key} = {json.dumps(value)}")
        (self.path / "config.toml").write_text("\n".join(lines) + "\n")

    def test_server(self, name: str, **extra: Any) -> dict[str, Any]:
        """The config table of the SDK's test server named `name`."""
        return {
            "command": sys.executable,
            "args": [TESTSERVER, "--name", name, "--home-tag", str(self.path)],
            **extra,
        }

    def light_server(self, name: str, **extra: Any) -> dict[str, Any]:
        """The config table of the light test server named `name` (echo, add, pid,
        slow, crash, hang): for tests where the server itself is incidental."""
        return {
            "command": sys.executable,
            "args": [LIGHTSERVER, "--name", name, "--home-tag", str(self.path)],
            **extra,
        }

    def bridge_argv(self, server: str | None = None, profile: str | None = None) -> list[str]:
        argv = ["--home", str(self.path), "mcp"]
        if profile:
            return [*argv, "--profile", profile]
        return [*argv, "--server", server] if server else argv

    def params(self, server: str | None = None, profile: str | None = None) -> Any:
        from mcp import StdioServerParameters

        argv = self.bridge_argv(server, profile)
        return StdioServerParameters(command=BICAMERAL, args=argv, env=self.env)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BICAMERAL, "--home", str(self.path), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )

    def descriptor(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.path / "daemon.json").read_text())
        except FileNotFoundError:
            return None
        return data

    def daemon_pid(self) -> int:
        descriptor = self.descriptor()
        assert descriptor is not None, "no daemon is running"
        return int(descriptor["pid"])

    def upstreams(self) -> list[psutil.Process]:
        """Live processes started for this home's configured servers."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = proc.info["cmdline"] or []
            tagged = "--home-tag" in cmdline and str(self.path) in cmdline
            if tagged and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        return found

    def teardown(self) -> list[str]:
        problems = []
        descriptor = self.descriptor()
        if descriptor is not None:
            self.cli("daemon", "stop", "--timeout", "5")
            pid = int(descriptor["pid"])
            if psutil.pid_exists(pid):
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        problems.append(f"daemon {pid} survived `daemon stop`")
                        os.kill(pid, signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
        left = self.upstreams()
        _, alive = psutil.wait_procs(left, timeout=3)
        for proc in alive:
            problems.append(f"upstream {proc.pid} outlived the test")
            proc.kill()
        shutil.rmtree(self.path, ignore_errors=True)
        return problems


@pytest.fixture
def mcp_home() -> Iterator[McpHome]:
    home = McpHome()
    try:
        yield home
    finally:
        problems = home.teardown()
        assert not problems, problems
