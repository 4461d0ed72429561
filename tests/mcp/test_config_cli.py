"""``bicameral mcp add | remove | list | import`` through the real CLI, as subprocesses."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("BICAMERAL", "PYTEST"))}


@pytest.fixture
def home() -> Iterator[Path]:
    # short, under /tmp: a daemon started here binds its socket in it
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcc"))
    path.chmod(0o700)
    try:
        yield path
    finally:
        subprocess.run(
            [sys.executable, "-m", "bicameral", "--home", str(path), "daemon", "stop"],
            capture_output=True,
            env=ENV,
            check=False,
            timeout=30,
        )
        shutil.rmtree(path, ignore_errors=True)


def bc(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "bicameral", "--home", str(home), "mcp", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out


def fails(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """``out`` failed with ``code`` and one stderr line containing every needle."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("bicameral: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def ok(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, (out.stdout, out.stderr)
    return json.loads(out.stdout)  # stdout is a pipe: JSON


def test_add_list_remove(home: Path) -> None:
    out = ok(
        bc(
            home,
            "add",
            "files",
            "--env",
            "LOG_LEVEL=info",
            "-e",
            "EMPTY=",
            "--cwd",
            str(home),
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "--env",
            "/srv",
        )
    )
    assert out["status"] == "added"
    assert out["config_path"] == str(home / "config.toml")
    assert out["server"]["args"] == [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "--env",
        "/srv",
    ]
    ok(bc(home, "add", "plain", sys.executable, "server.py"))  # no flags: `--` optional
    listed = ok(bc(home, "list"))
    assert listed["config_path"] == str(home / "config.toml")
    assert listed["servers"] == [
        {
            "name": "files",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "--env", "/srv"],
            "env": {"EMPTY": "", "LOG_LEVEL": "info"},
            "cwd": str(home),
            "enabled": True,
            "share": "auto",
        },
        {
            "name": "plain",
            "command": sys.executable,
            "args": ["server.py"],
            "env": {},
            "cwd": None,
            "enabled": True,
            "share": "auto",
        },
    ]
    assert (home / "config.toml").stat().st_mode & 0o777 == 0o600
    assert ok(bc(home, "remove", "files"))["status"] == "removed"
    assert [s["name"] for s in ok(bc(home, "list"))["servers"]] == ["plain"]


def test_add_existing_needs_replace(home: Path) -> None:
    ok(bc(home, "add", "a", "--", "one"))
    fails(bc(home, "add", "a", "--", "two"), 1, "'a' already exists", "--replace")
    out = ok(bc(home, "add", "a", "--replace", "--disabled", "--", "two", "--flag"))
    assert out["status"] == "replaced"
    assert ok(bc(home, "list"))["servers"][0] == {
        "name": "a",
        "command": "two",
        "args": ["--flag"],
        "env": {},
        "cwd": None,
        "enabled": False,
        "share": "auto",
    }


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["add", "x"], ["missing the server's command", "-- COMMAND"]),
        (["add", "x", "--"], ["missing the server's command"]),
        (["add", "x", "--env", "NOEQUALS", "--", "cmd"], ["--env expects NAME=VALUE", "NOEQUALS"]),
        (["add", "x", "--env", "=v", "--", "cmd"], ["--env expects NAME=VALUE"]),
        (["add", "x", "npx", "-y", "pkg"], ["No such option: -y", "after `--`"]),
        (["add", "x", "extra", "--", "cmd"], ["unexpected argument(s) before `--`: extra"]),
        (["add", "a.b", "--", "cmd"], ["invalid server name 'a.b'"]),
        (["add", "a__b", "--", "cmd"], ["must not contain '__'"]),
        (["add", "x", "--cwd", "/nonexistent/dir", "--", "cmd"], ["no such directory"]),
        (["add"], ["Missing argument"]),
        (["frobnicate"], ["No such command 'frobnicate'"]),
        (["list", "--bogus"], ["No such option: --bogus"]),
        (["--server", "x", "list"], ["--server is for the bridge"]),
        (["--server="], ["--server needs a server name"]),
    ],
)
def test_command_line_errors_exit_2_with_one_line(
    home: Path, args: list[str], needles: list[str]
) -> None:
    fails(bc(home, *args), 2, *needles)
    assert not (home / "config.toml").exists()


def test_remove_unknown_server(home: Path) -> None:
    fails(bc(home, "remove", "ghost"), 1, "no server named 'ghost'")
    ok(bc(home, "add", "a", "--", "x"))
    fails(bc(home, "remove", "ghost"), 1, "no server named 'ghost'", "configured: a")


def test_invalid_config_file_is_one_line(home: Path) -> None:
    config = home / "config.toml"
    config.write_text('[mcp.servers.files]\ncommand = "npx"\nargs = "-y"\n')
    fails(bc(home, "list"), 1, str(config), "[mcp.servers.files]", '"args" must be a list')
    fails(bc(home, "add", "b", "--", "x"), 1, '"args" must be a list')
    config.write_text("[mcp.servers\n")
    fails(bc(home, "list"), 1, str(config), "invalid TOML", "line 1")


def test_config_option_overrides_the_file(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "sub" / "other.toml"
    out = ok(bc(home, "add", "a", "--config", str(other), "--", "x"))
    assert out["config_path"] == str(other)
    assert other.exists()
    assert not (home / "config.toml").exists()
    assert [s["name"] for s in ok(bc(home, "list", "--config", str(other)))["servers"]] == ["a"]


def test_import_claude_desktop_and_claude_code(home: Path, tmp_path: Path) -> None:
    desktop = tmp_path / "claude_desktop_config.json"
    desktop.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "filesystem": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me"],
                    },
                    "github": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-github"],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_xxx"},
                    },
                }
            }
        )
    )
    out = ok(bc(home, "import", str(desktop)))
    assert out["status"] == "imported"
    assert out["added"] == ["filesystem", "github"]
    code = tmp_path / ".mcp.json"
    code.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "memory": {"type": "stdio", "command": "npx", "args": ["-y", "mem"]},
                    "sentry": {"type": "http", "url": "https://mcp.sentry.dev/mcp"},
                    "github": {"type": "stdio", "command": "gh-mcp"},
                }
            }
        )
    )
    out = ok(bc(home, "import", str(code)))
    assert out["added"] == ["memory", "sentry"]
    skipped = {s["name"]: s["reason"] for s in out["skipped"]}
    assert "--replace" in skipped["github"]
    out = ok(bc(home, "import", "--replace", str(code)))
    assert out["replaced"] == ["memory", "sentry", "github"]
    servers = {s["name"]: s for s in ok(bc(home, "list"))["servers"]}
    assert servers["github"]["command"] == "gh-mcp"
    assert servers["github"]["env"] == {}
    assert set(servers) == {"filesystem", "github", "memory", "sentry"}


def test_import_bad_files(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {"a": ')
    fails(bc(home, "import", str(bad)), 1, str(bad), "invalid JSON", "line 1")
    fails(bc(home, "import", str(tmp_path / "missing.json")), 1, "no such file")
    other = tmp_path / "other.json"
    other.write_text('{"theme": "dark"}')
    fails(bc(home, "import", str(other)), 1, 'no "mcpServers" object')
    assert not (home / "config.toml").exists()


def test_list_on_a_terminal_is_a_table(home: Path) -> None:
    ok(bc(home, "add", "files", "-e", "A=1", "--", "npx", "-y", "server fs"))
    ok(bc(home, "add", "off", "--disabled", "--", "uvx", "thing"))
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bicameral", "--home", str(home), "mcp", "list"],
            stdout=slave,
            stderr=subprocess.PIPE,
            env={**ENV, "COLUMNS": "200"},
            timeout=30,
            check=False,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    lines = b"".join(chunks).decode().replace("\r\n", "\n").strip().splitlines()
    assert lines[0].split() == ["NAME", "ENABLED", "ENV", "COMMAND"]
    assert lines[1].split() == ["files", "yes", "A", "npx", "-y", "'server", "fs'"]
    assert lines[2].split() == ["off", "no", "-", "uvx", "thing"]


def test_list_empty_and_json_flag(home: Path) -> None:
    assert ok(bc(home, "list", "--json")) == {
        "config_path": str(home / "config.toml"),
        "servers": [],
    }


def test_running_daemon_gets_a_reload_hint(home: Path) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "bicameral", "--home", str(home), "daemon", "start"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    out = bc(home, "add", "a", "--", sys.executable, "-c", "pass")
    assert out.returncode == 0
    assert f"daemon (pid {pid}) is running" in out.stderr
    assert "bicameral daemon reload" in out.stderr
    out = bc(home, "remove", "a")
    assert "bicameral daemon reload" in out.stderr


def test_no_reload_hint_without_a_daemon(home: Path) -> None:
    out = bc(home, "add", "a", "--", sys.executable)
    assert out.returncode == 0
    assert out.stderr == ""
