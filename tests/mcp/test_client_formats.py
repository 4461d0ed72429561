"""The pieces of ``bicameral client``: the catalogue's paths, the JSONC reader, the dialects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bicameral.daemon import ConfigError
from bicameral.mcp.clients import find_client, known_clients
from bicameral.mcp.clients._dialect import import_entry, through_bicameral
from bicameral.mcp.clients._formats import load_document
from bicameral.mcp.clients._jsonc import MAX_DEPTH, JsoncError, parse


def paths(platform: str, home: str, env: dict[str, str], cwd: str) -> dict[str, str]:
    return {c.name: str(c.path) for c in known_clients(platform, home, env, cwd)}


def test_the_paths_on_linux_follow_xdg_and_the_clients_own_variables() -> None:
    got = paths("linux", "/home/u", {}, "/src/p")
    assert got["claude-desktop"] == "/home/u/.config/Claude/claude_desktop_config.json"
    assert got["claude-code"] == "/home/u/.claude.json"
    assert got["claude-code-project"] == "/src/p/.mcp.json"
    assert got["cursor"] == "/home/u/.cursor/mcp.json"
    assert got["vscode"] == "/home/u/.config/Code/User/mcp.json"
    assert got["vscode-workspace"] == "/src/p/.vscode/mcp.json"
    assert got["windsurf"] == "/home/u/.codeium/windsurf/mcp_config.json"
    assert got["codex"] == "/home/u/.codex/config.toml"
    assert got["gemini"] == "/home/u/.gemini/settings.json"
    env = {"XDG_CONFIG_HOME": "/x", "CLAUDE_CONFIG_DIR": "/c", "CODEX_HOME": "/k"}
    got = paths("linux", "/home/u", env, "/src/p")
    assert got["vscode"] == "/x/Code/User/mcp.json"
    assert got["claude-desktop"] == "/x/Claude/claude_desktop_config.json"
    assert got["claude-code"] == "/c/.claude.json"
    assert got["codex"] == "/k/config.toml"


def test_the_paths_on_macos_and_windows() -> None:
    mac = paths("darwin", "/Users/u", {}, "/p")
    support = "/Users/u/Library/Application Support"
    assert mac["claude-desktop"] == f"{support}/Claude/claude_desktop_config.json"
    assert mac["vscode"] == f"{support}/Code/User/mcp.json"
    assert mac["cursor"] == "/Users/u/.cursor/mcp.json"
    win = paths("win32", "C:\\Users\\u", {"APPDATA": "C:\\Users\\u\\AppData\\Roaming"}, "D:\\p")
    assert (
        win["claude-desktop"]
        == "C:\\Users\\u\\AppData\\Roaming\\Claude\\claude_desktop_config.json"
    )
    assert win["vscode"] == "C:\\Users\\u\\AppData\\Roaming\\Code\\User\\mcp.json"
    assert win["claude-code"] == "C:\\Users\\u\\.claude.json"
    assert win["windsurf"] == "C:\\Users\\u\\.codeium\\windsurf\\mcp_config.json"
    assert win["codex"] == "C:\\Users\\u\\.codex\\config.toml"
    assert win["claude-code-project"] == "D:\\p\\.mcp.json"


def test_an_unknown_client_lists_the_known_ones() -> None:
    clients = known_clients("linux", "/h", {}, "/p")
    with pytest.raises(ConfigError, match="known clients: claude-desktop, claude-code"):
        find_client(clients, "claude")


def test_jsonc_comments_trailing_commas_and_spans() -> None:
    text = '\ufeff{ // c\n "a": [1, 2.5e1, "x\\"y",], /* b */ "b": {"c": null, "d": true,},\n}'
    root = parse(text)
    assert root.plain() == {"a": [1, 25.0, 'x"y'], "b": {"c": None, "d": True}}
    b = root.get("b")
    assert b is not None
    assert text[b.start : b.end] == '{"c": null, "d": true,}'


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3),
        ('{\n  "a": tru\n}', 2, 8),
        ("{\n /* never closed\n}", 2, 2),
        ('{"a": "no end\n}', 1, 7),
        ("{}\n{}", 2, 1),
    ],
)
def test_jsonc_errors_name_the_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(JsoncError) as caught:
        parse(text)
    assert (caught.value.line, caught.value.column) == (line, column), caught.value


def test_jsonc_nesting_is_bounded() -> None:
    with pytest.raises(JsoncError, match="nested deeper"):
        parse("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@given(json_values, st.sampled_from([None, 2, "\t"]))
def test_jsonc_reads_what_json_writes(value: object, indent: int | str | None) -> None:
    assert parse(json.dumps(value, indent=indent)).plain() == value


def test_a_config_that_does_not_parse_names_its_path_and_line(tmp_path: Path) -> None:
    client = find_client(known_clients("linux", str(tmp_path), {}, str(tmp_path)), "vscode")
    path = tmp_path / "mcp.json"
    with pytest.raises(ConfigError, match=r"mcp.json: invalid JSON at line 3, column 5"):
        load_document(client, path, b'{\n  "servers": {\n    oops\n  }\n}')
    codex = find_client(known_clients("linux", str(tmp_path), {}, str(tmp_path)), "codex")
    with pytest.raises(ConfigError, match=r"config.toml: invalid TOML: .*line 2"):
        load_document(codex, tmp_path / "config.toml", b"a = 1\n[mcp_servers.x\n")


def test_each_dialects_remote_entries_import_as_the_same_server() -> None:
    assert import_entry("gemini", {"httpUrl": "https://h/mcp", "trust": True}) == {
        "type": "http",
        "url": "https://h/mcp",
    }
    assert import_entry("gemini", {"url": "https://h/sse"}) == {
        "url": "https://h/sse",
        "type": "sse",
    }
    assert import_entry("windsurf", {"serverUrl": "https://h/mcp"}) == {
        "serverUrl": "https://h/mcp"
    }
    codex = {
        "url": "https://h/mcp",
        "bearer_token_env_var": "TOKEN",
        "http_headers": {"X-A": "b"},
        "enabled": False,
        "tool_timeout_sec": 5,
    }
    assert import_entry("codex", codex) == {
        "type": "http",
        "url": "https://h/mcp",
        "headers": {"X-A": "b", "Authorization": "Bearer ${TOKEN}"},
        "disabled": True,
    }


def test_an_entry_through_bicameral_is_recognised() -> None:
    bridge = {"command": "/opt/bin/bicameral", "args": ["--home", "/h", "mcp", "--server", "x"]}
    assert through_bicameral("claude", bridge) == "x"
    assert through_bicameral("claude", {"command": "bicameral", "args": ["mcp"]}) == "*"
    assert through_bicameral("claude", {"command": "npx", "args": ["mcp"]}) is None
    listener = {"Authorization": "Bearer T"}
    vscode = {"type": "http", "url": "http://127.0.0.1:8765/mcp/y", "headers": listener}
    assert through_bicameral("vscode", vscode, "T") == "y"
    assert through_bicameral("vscode", vscode, "other") is None
    assert through_bicameral("vscode", {**vscode, "headers": {}}, "T") is None
    windsurf = {"serverUrl": "http://localhost:1/mcp", "headers": listener}
    assert through_bicameral("windsurf", windsurf, "T") == "*"
    remote = {"type": "http", "url": "https://example.com/mcp/y", "headers": listener}
    assert through_bicameral("claude", remote, "T") is None
