"""``bicameral client list | setup | undo`` against a fake home holding every client's config.

Each config is shaped like the real one (other keys, comments, trailing
commas, tabs, CRLF, one-line JSON, TOML sub-tables) and names real test
servers; after setup, every rewritten entry is run as the client would run
it, through the official SDK, against the real daemon.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from bicameral.mcp.clients._jsonc import parse
from tests.mcp._support import text
from tests.mcp.conftest import BICAMERAL, McpHome
from tests.mcp.test_remote import free_port, remote


class FakeMachine:
    """A home directory and a project directory with every client's config in them."""

    def __init__(self, root: Path, home: McpHome) -> None:
        self.home = root / "home"
        self.project = root / "project"
        self.bicameral = home
        self.env = {**home.env, "HOME": str(self.home)}
        for key in ("XDG_CONFIG_HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "APPDATA"):
            self.env.pop(key, None)
        self.files: dict[str, Path] = {}
        self.home.mkdir()
        self.project.mkdir()

    def server(self, name: str) -> tuple[str, list[str]]:
        spec = self.bicameral.light_server(name)
        return spec["command"], spec["args"]

    def write(self, client: str, relative: str, text: str, *, project: bool = False) -> Path:
        path = (self.project if project else self.home) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        self.files[client] = path
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BICAMERAL, "--home", str(self.bicameral.path), "client", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.project,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> dict[str, Any]:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def snapshot(self) -> dict[str, bytes]:
        return {name: path.read_bytes() for name, path in self.files.items()}


def q(value: Any) -> str:
    return json.dumps(value)


def write_every_client(m: FakeMachine, remote_url: str) -> None:
    """Real-shaped configs of every client, each with its own servers."""
    cmd, args = m.server("desk-a")
    m.write(
        "claude-desktop",
        ".config/Claude/claude_desktop_config.json",
        f"""{{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {{
    "desk-a": {{
      "command": {q(cmd)},
      "args": {q(args)},
      "env": {{ "LOG_LEVEL": "debug" }}
    }}
  }},
  "preferences": {{ "menuBarEnabled": false }}
}}
""",
    )
    cmd, args = m.server("code-a")
    m.write(
        "claude-code",
        ".claude.json",
        json.dumps(
            {
                "numStartups": 42,
                "projects": {str(m.project): {"allowedTools": [], "history": [{"display": "hi"}]}},
                "mcpServers": {
                    "code-a": {"type": "stdio", "command": cmd, "args": args, "env": {}},
                    "code-remote": {
                        "type": "http",
                        "url": remote_url,
                        "headers": {"X-Team": "core"},
                    },
                },
                "userID": "abc",
            },
            indent=2,
        ),
    )
    cmd, args = m.server("proj-a")
    m.write(
        "claude-code-project",
        ".mcp.json",
        json.dumps({"mcpServers": {"proj-a": {"command": cmd, "args": args}}}, indent=4) + "\n",
        project=True,
    )
    cmd, args = m.server("cur-a")
    m.write(
        "cursor",
        ".cursor/mcp.json",
        f"""// Cursor's MCP servers
{{
\t"mcpServers": {{
\t\t/* the test server */
\t\t"cur-a": {{
\t\t\t"command": {q(cmd)},
\t\t\t"args": {q(args)},
\t\t\t"disabled": false, // on
\t\t}},
\t}},
}}
""",
    )
    cmd, args = m.server("vs-a")
    vscode = f"""{{
  // Inputs prompt the user once
  "inputs": [
    {{ "type": "promptString", "id": "key", "description": "API key", "password": true }}
  ],
  "servers": {{
    "vs-a": {{
      "type": "stdio",
      "command": {q(cmd)},
      "args": {q(args)},
    }},
  }},
}}
"""
    m.write("vscode", ".config/Code/User/mcp.json", vscode.replace("\n", "\r\n"))
    cmd, args = m.server("wind-a")
    m.write(
        "windsurf",
        ".codeium/windsurf/mcp_config.json",
        json.dumps({"mcpServers": {"wind-a": {"command": cmd, "args": args}}}),
    )
    cmd, args = m.server("codex-a")
    m.write(
        "codex",
        ".codex/config.toml",
        f"""# Codex settings
model = "o3"  # the default model
approval_policy = "on-request"

[mcp_servers.codex-a]
command = {q(cmd)}
args = {q(args)}
startup_timeout_sec = 20   # slow machines

[mcp_servers.codex-a.env]
LOG_LEVEL = "info"

[profiles.fast]
model = "o4-mini"
""",
    )
    cmd, args = m.server("gem-a")
    m.write(
        "gemini",
        ".gemini/settings.json",
        f"""{{
  "theme": "Default",
  "mcpServers": {{
    "gem-a": {{ "command": {q(cmd)}, "args": {q(args)}, "trust": true, "timeout": 30000 }}
  }}
}}
""",
    )


CLIENTS = [
    "claude-desktop",
    "claude-code",
    "claude-code-project",
    "cursor",
    "vscode",
    "windsurf",
    "codex",
    "gemini",
]


def entries(m: FakeMachine, client: str) -> dict[str, Any]:
    """The server entries of ``client``'s config as the client reads them."""
    data = m.files[client].read_bytes().decode()
    if client == "codex":
        import tomllib

        servers: dict[str, Any] = tomllib.loads(data)["mcp_servers"]
        return servers
    key = "servers" if client == "vscode" else "mcpServers"
    servers = parse(data).plain()[key]
    return servers


@pytest.fixture
def machine(tmp_path: Path, mcp_home: McpHome) -> FakeMachine:
    return FakeMachine(tmp_path, mcp_home)


async def call_echo_through(m: FakeMachine, entry: dict[str, Any], word: str) -> str:
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=m.env)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return text(await session.call_tool("echo", {"text": word}))


# Some 30 CLI runs and 9 SDK sessions: more than the default bound on a loaded machine.
@pytest.mark.timeout(360)
async def test_setup_every_client_then_each_rewritten_entry_works_and_undo_is_byte_exact(
    machine: FakeMachine,
) -> None:
    m = machine
    port = free_port()
    with remote(port):
        write_every_client(m, f"http://127.0.0.1:{port}/mcp")
        before = m.snapshot()
        listed = {c["name"]: c for c in m.json("list")["clients"]}
        for client in CLIENTS:
            assert listed[client]["found"], client
            assert all(s["through"] is None for s in listed[client]["servers"]), client

        # --dry-run prints the diff and writes nothing, anywhere.
        dry = m.json("setup", "vscode", "--dry-run")
        assert dry["status"] == "dry-run"
        assert '-      "command": ' in dry["diff"].replace("\r", "")
        assert "[mcp.servers.vs-a]" in dry["diff"]
        assert m.snapshot() == before
        assert not (m.bicameral.path / "config.toml").exists()

        for client in CLIENTS:
            result = m.json("setup", client, "--no-reload")
            assert result["status"] == "set-up", (client, result)
            assert result["import"]["skipped"] == [], (client, result)
        setup = m.snapshot()

        # Idempotent: a second run finds everything through bicameral.
        for client in CLIENTS:
            again = m.json("setup", client)
            assert again["status"] == "unchanged", (client, again)
            assert again["rewritten"] == {}
        assert m.snapshot() == setup

        # What stayed: other keys, comments, layout (spot checks per format).
        cursor = m.files["cursor"].read_text()
        assert cursor.startswith('// Cursor\'s MCP servers\n{\n\t"mcpServers": {\n')
        assert '\t\t\t"disabled": false, // on\n\t\t},' in cursor
        vscode = m.files["vscode"].read_bytes()
        assert b"\r\n" in vscode and b"\n" not in vscode.replace(b"\r\n", b"")
        assert b"// Inputs prompt the user once" in vscode
        assert b'"type": "stdio"' in vscode
        codex = m.files["codex"].read_text()
        assert codex.startswith('# Codex settings\nmodel = "o3"  # the default model\n')
        assert "startup_timeout_sec = 20   # slow machines" in codex
        assert "[profiles.fast]" in codex and "LOG_LEVEL" not in codex
        gemini = entries(m, "gemini")["gem-a"]
        assert gemini["trust"] is True and gemini["timeout"] == 30000
        code = json.loads(m.files["claude-code"].read_text())
        assert code["numStartups"] == 42 and code["projects"][str(m.project)]["history"]

        listed = {c["name"]: c for c in m.json("list")["clients"]}
        for client in CLIENTS:
            assert all(s["through"] == s["name"] for s in listed[client]["servers"]), client

        # Every rewritten entry is a command line that reaches its server.
        for client in CLIENTS:
            for name, entry in entries(m, client).items():
                assert entry["args"][-2:] == ["--server", name]
                assert await call_echo_through(m, entry, f"{client}/{name}") == f"{client}/{name}"

    for client in CLIENTS:
        result = m.json("undo", client)
        assert result["status"] == "restored"
        assert m.files[client].read_bytes() == before[client], client


def test_a_changed_file_is_not_overwritten_without_force(machine: FakeMachine) -> None:
    m = machine
    cmd, args = m.server("one")
    path = m.write(
        "cursor", ".cursor/mcp.json", q({"mcpServers": {"one": {"command": cmd, "args": args}}})
    )
    original = path.read_bytes()
    assert m.json("setup", "cursor")["status"] == "set-up"
    path.write_bytes(path.read_bytes().replace(b"}}}", b'}}, "note": 1}'))
    changed = path.read_bytes()
    refused = m.cli("undo", "cursor")
    assert refused.returncode == 1
    assert "changed since `client setup cursor`" in refused.stderr
    assert "--force" in refused.stderr
    assert path.read_bytes() == changed
    assert m.json("undo", "cursor", "--force")["status"] == "restored"
    assert path.read_bytes() == original
    again = m.cli("undo", "cursor")
    assert again.returncode == 1 and "nothing to undo" in again.stderr


def test_setup_of_a_file_changed_since_its_setup_needs_force_and_undo_goes_back_one_step(
    machine: FakeMachine,
) -> None:
    m = machine
    one, two = m.server("one"), m.server("two")
    path = m.write(
        "gemini",
        ".gemini/settings.json",
        q({"mcpServers": {"one": {"command": one[0], "args": one[1]}}}),
    )
    original = path.read_bytes()
    m.json("setup", "gemini")
    data = json.loads(path.read_text())
    data["mcpServers"]["two"] = {"command": two[0], "args": two[1]}
    path.write_text(json.dumps(data))
    with_two = path.read_bytes()
    refused = m.cli("setup", "gemini")
    assert refused.returncode == 1 and "changed since bicameral set it up" in refused.stderr
    assert path.read_bytes() == with_two
    result = m.json("setup", "gemini", "--force")
    assert result["rewritten"] == {"two": "two"} and result["already"] == {"one": "one"}
    m.json("undo", "gemini")
    assert path.read_bytes() == with_two
    m.json("undo", "gemini", "--force")
    assert path.read_bytes() == original


def test_a_name_clash_between_clients_is_a_question_answered_by_a_flag(
    machine: FakeMachine,
) -> None:
    m = machine
    a, b = m.server("files"), m.server("files-other")
    m.write(
        "cursor", ".cursor/mcp.json", q({"mcpServers": {"files": {"command": a[0], "args": a[1]}}})
    )
    windsurf = m.write(
        "windsurf",
        ".codeium/windsurf/mcp_config.json",
        q({"mcpServers": {"files": {"command": b[0], "args": b[1]}}}),
    )
    m.json("setup", "cursor")
    config = (m.bicameral.path / "config.toml").read_bytes()
    untouched = windsurf.read_bytes()
    refused = m.cli("setup", "windsurf")
    assert refused.returncode == 1
    assert "different server named files" in refused.stderr and "--on-clash" in refused.stderr
    assert windsurf.read_bytes() == untouched
    assert (m.bicameral.path / "config.toml").read_bytes() == config

    renamed = m.json("setup", "windsurf", "--on-clash", "rename", "--dry-run")
    assert renamed["rewritten"] == {"files": "files-windsurf"}
    kept = m.json("setup", "windsurf", "--on-clash", "keep")
    assert kept["rewritten"] == {"files": "files"} and kept["import"]["added"] == []
    assert (m.bicameral.path / "config.toml").read_bytes() == config
    m.json("undo", "windsurf")
    replaced = m.json("setup", "windsurf", "--on-clash", "replace")
    assert replaced["import"]["replaced"] == ["files"]
    assert "files-other" in (m.bicameral.path / "config.toml").read_text()


def test_an_unparsable_config_is_reported_with_its_line_and_left_untouched(
    machine: FakeMachine,
) -> None:
    m = machine
    path = m.write(
        "vscode", ".config/Code/User/mcp.json", '{\n  "servers": {\n    "a": {,\n  }\n}\n'
    )
    before = path.read_bytes()
    done = m.cli("setup", "vscode")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{path}: invalid JSON at line 3, column 11" in done.stderr
    assert path.read_bytes() == before
    listed = {c["name"]: c for c in m.json("list")["clients"]}
    assert "line 3" in listed["vscode"]["error"]
    unknown = m.cli("setup", "claude")
    assert unknown.returncode == 1 and "known clients: claude-desktop" in unknown.stderr
    missing = m.cli("setup", "windsurf")
    assert missing.returncode == 1 and "has no config at" in missing.stderr


async def test_setup_http_points_a_client_at_the_listener(machine: FakeMachine) -> None:
    m = machine
    port = free_port()
    m.bicameral.configure({}, daemon=f'[daemon.http]\nlisten = "127.0.0.1:{port}"\n')
    started = m.bicameral.cli("daemon", "start")
    assert started.returncode == 0, started.stderr
    cmd, args = m.server("hv")
    m.write(
        "vscode",
        ".config/Code/User/mcp.json",
        q({"servers": {"hv": {"type": "stdio", "command": cmd, "args": args}}}),
    )
    cmd, args = m.server("hc")
    m.write(
        "codex", ".codex/config.toml", f"[mcp_servers.hc]\ncommand = {q(cmd)}\nargs = {q(args)}\n"
    )
    for client in ("vscode", "codex"):
        assert m.json("setup", client, "--http")["status"] == "set-up"
    vscode = entries(m, "vscode")["hv"]
    assert vscode["type"] == "http" and vscode["url"].endswith("/mcp/hv")
    codex = entries(m, "codex")["hc"]
    assert codex["url"].endswith("/mcp/hc") and "command" not in codex
    for url, headers in ((vscode["url"], vscode["headers"]), (codex["url"], codex["http_headers"])):
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
        ):
            assert text(await client.call_tool("echo", {"text": "over http"})) == "over http"
    denied = m.cli("setup", "claude-desktop", "--http")
    assert denied.returncode == 1 and "runs only local commands" in denied.stderr
    listed = {c["name"]: c for c in m.json("list")["clients"]}
    assert listed["vscode"]["servers"] == [{"name": "hv", "through": "hv"}]
