"""MCP server configuration: validation, comment-preserving edits, import, atomic writes."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from bicameral.daemon import ConfigError
from bicameral.mcp._config import ServerConfig, load_servers, read_config
from bicameral.mcp._config_edit import (
    HEADER,
    add_server,
    import_servers,
    list_servers,
    remove_server,
)

CFG = Path("/home/u/.bicameral/config.toml")


def servers_of(table: dict[str, Any]) -> dict[str, ServerConfig]:
    return load_servers({"mcp": {"servers": table}}, CFG)


def error_of(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        servers_of(table)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- validation ----------------------------------------------------------------------


def test_a_full_table_loads_with_sorted_env_and_expanded_cwd() -> None:
    got = servers_of(
        {
            "files": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me"],
                "env": {"Z": "1", "A": "2"},
                "cwd": "~/work",
                "enabled": False,
            }
        }
    )
    files = got["files"]
    assert files == ServerConfig(
        name="files",
        command="npx",
        args=("-y", "@modelcontextprotocol/server-filesystem", "/home/me"),
        env=(("A", "2"), ("Z", "1")),
        cwd=os.path.expanduser("~/work"),
        enabled=False,
    )
    assert files.env_dict() == {"A": "2", "Z": "1"}
    assert files.argv() == ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/home/me"]


def test_equal_tables_give_equal_hashable_configs_across_loads() -> None:
    a = servers_of({"s": {"command": "x", "env": {"B": "1", "A": "2"}}})["s"]
    b = servers_of({"s": {"env": {"A": "2", "B": "1"}, "command": "x"}})["s"]
    assert a == b
    assert hash(a) == hash(b)
    assert {a, b} == {a}


def test_defaults_and_file_order() -> None:
    got = servers_of({"b": {"command": "x"}, "a": {"command": "y"}})
    assert list(got) == ["b", "a"]
    assert got["b"] == ServerConfig("b", "x", (), (), None, True)


def test_missing_mcp_or_servers_means_no_servers() -> None:
    assert load_servers({}, CFG) == {}
    assert load_servers({"daemon": {"x": 1}}, CFG) == {}
    assert load_servers({"mcp": {}}, CFG) == {}


@pytest.mark.parametrize(
    ("table", "field", "what"),
    [
        ({}, '"command"', "is required"),
        ({"command": ""}, '"command"', "must not be empty"),
        ({"command": "  "}, '"command"', "must not be empty"),
        ({"command": 3}, '"command"', "must be a string"),
        ({"command": "x", "args": "a b"}, '"args"', "must be a list of strings"),
        ({"command": "x", "args": ["a", 1]}, '"args"', "must be a list of strings"),
        ({"command": "x", "env": "A=1"}, '"env"', "must be a table of strings"),
        ({"command": "x", "env": {"A": 1}}, '"env"', "value of A must be a string"),
        ({"command": "x", "env": {"A=B": "1"}}, '"env"', "invalid variable name"),
        ({"command": "x", "cwd": 5}, '"cwd"', "must be a non-empty string"),
        ({"command": "x", "cwd": "relative/dir"}, '"cwd"', "must be an absolute path"),
        ({"command": "x", "enabled": "yes"}, '"enabled"', "must be true or false"),
        ({"command": "x", "enabled": 1}, '"enabled"', "must be true or false"),
        ({"command": "x", "arg": []}, "'arg'", "unknown key"),
        ({"command": "x", "era": "modern"}, '"era"', "must be one of 'auto', 'handshake'"),
        (
            {"url": "https://h/mcp", "auth": "oauth", "client_secret": "s"},
            '"client_secret"',
            'needs the "client_id"',
        ),
        (
            {"url": "https://h/mcp", "client_id": "c"},
            '"client_id"',
            'only used with auth = "oauth"',
        ),
    ],
)
def test_each_invalid_field_names_file_server_and_field(
    table: dict[str, Any], field: str, what: str
) -> None:
    message = error_of({"files": table})
    assert message.startswith(f"{CFG}: [mcp.servers.files] ")
    assert field in message
    assert what in message


def test_the_documented_example_message() -> None:
    message = error_of({"files": {"command": "npx", "args": "-y"}})
    assert message == f'{CFG}: [mcp.servers.files] "args" must be a list of strings'


@pytest.mark.parametrize("name", ["a.b", "a b", "", "ünï", "a__b", "x/y"])
def test_bad_server_names_are_rejected(name: str) -> None:
    message = error_of({name: {"command": "x"}})
    assert str(CFG) in message
    assert repr(name) in message or "non-empty" in message


def test_good_server_names() -> None:
    assert list(servers_of({n: {"command": "x"} for n in ["a", "A-1", "x_y", "-", "9"]}))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mcp": 3}, '"mcp" must be a table'),
        ({"mcp": {"servers": []}}, '"mcp.servers" must be a table'),
        ({"mcp": {"server": {}}}, "[mcp] unknown key 'server'"),
        ({"mcp": {"servers": {"a": "npx"}}}, "[mcp.servers.a] must be a table"),
    ],
)
def test_structural_errors(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_servers(config, CFG)
    assert expected in str(info.value)
    assert str(CFG) in str(info.value)


def test_read_config_reports_syntax_errors_with_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[mcp.servers.a]\ncommand = npx\n")
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value)
    assert read_config(tmp_path / "missing.toml") == {}
    with pytest.raises(ConfigError, match="is a directory"):
        read_config(tmp_path)


# --- editing -------------------------------------------------------------------------

HAND_WRITTEN = """\
# My bicameral config.   Hand-written; please keep my comments!

[daemon]
log_level = "debug"    # noisy on purpose

# --- MCP servers ---------------------------------------------------

[mcp.servers.files]
command = "npx"          # node wrapper
args    = [ "-y", "@modelcontextprotocol/server-filesystem",
            "/home/me" ]   # aligned by hand
env     = { LOG_LEVEL = "info" }

# git is flaky; keep an eye on it
[mcp.servers.git]
command = "uvx"
args = ["mcp-server-git"]
enabled = false  # off for now

[other]
answer = 42
"""


def test_add_to_a_hand_written_file_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    replaced = add_server(path, ServerConfig("time", "uvx", ("mcp-server-time",)))
    assert replaced is False
    text = path.read_text()
    # every original line is still there, in order
    remaining = iter(text.splitlines())
    for line in HAND_WRITTEN.splitlines():
        assert any(line == got for got in remaining), line
    assert '[mcp.servers.time]\ncommand = "uvx"\nargs = ["mcp-server-time"]\n' in text
    # the new table sits with the other servers, set off by blank lines
    assert text.index("[mcp.servers.time]") < text.index("[other]")
    assert "\n\n[mcp.servers.time]" in text
    assert 'args = ["mcp-server-time"]\n\n[other]' in text
    assert [s.name for s in list_servers(path)] == ["files", "git", "time"]


def test_remove_keeps_the_rest_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    remove_server(path, "git")
    text = path.read_text()
    assert "[mcp.servers.git]" not in text
    assert "enabled = false" not in text
    for line in [
        "# My bicameral config.   Hand-written; please keep my comments!",
        'log_level = "debug"    # noisy on purpose',
        'command = "npx"          # node wrapper',
        'args    = [ "-y", "@modelcontextprotocol/server-filesystem",',
        '            "/home/me" ]   # aligned by hand',
        "[other]",
        "answer = 42",
    ]:
        assert line in text.splitlines()
    assert [s.name for s in list_servers(path)] == ["files"]


def test_round_trip_add_remove_restores_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    add_server(path, ServerConfig("time", "uvx", ("mcp-server-time",), (("TZ", "UTC"),)))
    remove_server(path, "time")
    assert path.read_text() == HAND_WRITTEN


def test_replace_updates_in_place_and_keeps_comments_of_unchanged_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    new = ServerConfig(
        "files", "npx", ("-y", "@modelcontextprotocol/server-filesystem", "/srv"), ()
    )
    with pytest.raises(ConfigError, match=r"already exists.*--replace"):
        add_server(path, new)
    assert path.read_text() == HAND_WRITTEN
    assert add_server(path, new, replace=True) is True
    text = path.read_text()
    assert 'command = "npx"          # node wrapper' in text  # unchanged key untouched
    assert "LOG_LEVEL" not in text  # env dropped
    assert "/srv" in text
    assert text.index("[mcp.servers.files]") < text.index("[mcp.servers.git]")  # same place
    assert list_servers(path)[0] == ServerConfig(
        "files", "npx", ("-y", "@modelcontextprotocol/server-filesystem", "/srv")
    )


def test_add_creates_file_and_state_dir_private(tmp_path: Path) -> None:
    home = tmp_path / "state"
    path = home / "config.toml"
    add_server(path, ServerConfig("a", "cmd", ("x",), (("K", "v"),), "/tmp", False))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith(HEADER)
    assert list_servers(path) == [ServerConfig("a", "cmd", ("x",), (("K", "v"),), "/tmp", False)]
    assert [p.name for p in home.iterdir()] == ["config.toml"]  # no temp file left


def test_writes_make_an_existing_file_0600(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    path.chmod(0o644)
    add_server(path, ServerConfig("a", "x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_long_args_are_written_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    args = ("-y", "@modelcontextprotocol/server-filesystem", "/home/me/a", "/home/me/b/c/d")
    add_server(path, ServerConfig("files", "npx", args))
    assert '    "/home/me/b/c/d",\n]' in path.read_text()
    assert list_servers(path)[0].args == args


def test_a_symlinked_config_is_edited_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "bicameral.toml"
    real.parent.mkdir()
    real.write_text("# mine\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    add_server(link, ServerConfig("a", "x"))
    assert link.is_symlink()
    assert "[mcp.servers.a]" in real.read_text()


def test_invalid_new_server_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    before = path.stat()
    for bad in [
        ServerConfig("a.b", "x"),
        ServerConfig("a__b", "x"),
        ServerConfig("ok", ""),
        ServerConfig("ok", "x", cwd="relative"),
        ServerConfig("ok", "x", env=(("A=B", "1"),)),
    ]:
        with pytest.raises(ConfigError):
            add_server(path, bad)
    assert path.read_text() == HAND_WRITTEN
    assert path.stat().st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_add_refuses_when_another_server_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = '[mcp.servers.old]\ncommand = "x"\nargs = "oops"\n'
    path.write_text(text)
    with pytest.raises(ConfigError, match=r'\[mcp.servers.old\] "args"'):
        add_server(path, ServerConfig("new", "y"))
    assert path.read_text() == text
    remove_server(path, "old")  # removing the broken one is always possible
    assert list_servers(path) == []


def test_invalid_toml_is_reported_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[mcp.servers.a\ncommand = 1\n")
    with pytest.raises(ConfigError, match=r"invalid TOML.*line 1"):
        add_server(path, ServerConfig("b", "x"))
    with pytest.raises(ConfigError, match="invalid TOML"):
        remove_server(path, "a")
    assert path.read_text() == "[mcp.servers.a\ncommand = 1\n"


def test_inline_mcp_table_is_refused_not_mangled(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = 'mcp = { servers = { a = { command = "x" } } }\n'
    path.write_text(text)
    with pytest.raises(ConfigError, match="edit the file by hand"):
        add_server(path, ServerConfig("b", "y"))
    assert path.read_text() == text


def test_remove_unknown_server(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        remove_server(path, "a")
    path.write_text(HAND_WRITTEN)
    with pytest.raises(ConfigError, match=r"no server named 'nope'.*configured: files, git"):
        remove_server(path, "nope")
    assert path.read_text() == HAND_WRITTEN


def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(ConfigError, match=r"cannot write.*No space left"):
        add_server(path, ServerConfig("new", "x"))
    assert path.read_text() == HAND_WRITTEN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            add_server(path, ServerConfig(f"s{i}", "x", (str(i),)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(s.name for s in list_servers(path)) == sorted(f"s{i}" for i in range(12))


# --- import --------------------------------------------------------------------------

CLAUDE_DESKTOP = {
    "mcpServers": {
        "filesystem": {
            "command": "npx",
            "args": [
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/Users/me/Desktop",
                "/Users/me/Downloads",
            ],
        },
        "github": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_xxx"},
        },
        "sqlite": {
            "command": "uvx",
            "args": ["mcp-server-sqlite", "--db-path", "/Users/me/test.db"],
        },
    },
    "globalShortcut": "",
}

CLAUDE_CODE = {
    "mcpServers": {
        "memory": {
            "type": "stdio",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-memory"],
            "env": {},
        },
        "sentry": {"type": "http", "url": "https://mcp.sentry.dev/mcp"},
        "linear": {
            "type": "sse",
            "url": "https://mcp.linear.app/sse",
            "headers": {"Authorization": "Bearer ${LINEAR_TOKEN}"},
        },
        "api": {
            "type": "stdio",
            "command": "${HOME}/bin/api-server",
            "args": ["--key", "${API_KEY:-none}"],
        },
    }
}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def test_import_claude_desktop(tmp_path: Path) -> None:
    source = write_json(tmp_path / "claude_desktop_config.json", CLAUDE_DESKTOP)
    path = tmp_path / "home" / "config.toml"
    result = import_servers(path, source)
    assert result.added == ["filesystem", "github", "sqlite"]
    assert result.skipped == []
    servers = {s.name: s for s in list_servers(path)}
    assert servers["github"] == ServerConfig(
        "github",
        "npx",
        ("-y", "@modelcontextprotocol/server-github"),
        (("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_xxx"),),
    )
    assert servers["filesystem"].args[-1] == "/Users/me/Downloads"
    assert servers["sqlite"].argv() == [
        "uvx",
        "mcp-server-sqlite",
        "--db-path",
        "/Users/me/test.db",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_import_claude_code_adds_stdio_http_and_sse_servers(tmp_path: Path) -> None:
    source = write_json(tmp_path / ".mcp.json", CLAUDE_CODE)
    path = tmp_path / "config.toml"
    result = import_servers(path, source)
    assert result.added == ["memory", "sentry", "linear", "api"]
    assert result.skipped == []
    notes = dict(result.notes)
    assert "${...}" in notes["api"]
    servers = {s.name: s for s in list_servers(path)}
    assert servers["memory"] == ServerConfig(
        "memory", "npx", ("-y", "@modelcontextprotocol/server-memory")
    )
    sentry, linear = servers["sentry"], servers["linear"]
    assert (sentry.url, sentry.transport) == ("https://mcp.sentry.dev/mcp", "http")
    assert (linear.url, linear.transport) == ("https://mcp.linear.app/sse", "sse")
    # The client's ${NAME} becomes bicameral's ${env:NAME}, expanded by the daemon.
    assert linear.headers == (("Authorization", "Bearer ${env:LINEAR_TOKEN}"),)
    text = path.read_text()
    assert 'url = "https://mcp.sentry.dev/mcp"' in text and 'transport = "sse"' in text


def test_import_cursor_url_entries_and_odd_names(tmp_path: Path) -> None:
    source = write_json(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "remote": {"url": "http://localhost:3000/sse"},
                "my.server": {"command": "node", "args": ["server.js"], "cwd": "srv"},
                "bad": {"command": "x", "args": "not a list"},
                "nocmd": {"args": []},
                "odd": {"command": "x", "env": {"PORT": 8080}, "envFile": ".env"},
                "off": {"command": "x", "disabled": True, "autoApprove": ["t"]},
            }
        },
    )
    path = tmp_path / "config.toml"
    (tmp_path / "srv").mkdir()  # a relative cwd is the JSON file's; it must exist
    result = import_servers(path, source)
    assert result.added == ["remote", "my-server", "odd", "off"]
    assert result.renamed == {"my.server": "my-server"}
    skipped = dict(result.skipped)
    assert "sse" in dict(result.notes)["remote"]
    assert '"args"' in skipped["bad"]
    assert "command" in skipped["nocmd"]
    assert "envFile" in dict(result.notes)["odd"]
    servers = {s.name: s for s in list_servers(path)}
    assert servers["my-server"].cwd == str(tmp_path / "srv")  # relative to the JSON file
    assert servers["odd"].env_dict() == {"PORT": "8080"}
    assert servers["off"].enabled is False
    assert servers["remote"].transport == "sse"


def test_import_refuses_a_cwd_that_does_not_exist(tmp_path: Path) -> None:
    source = write_json(
        tmp_path / "mcp.json",
        {"mcpServers": {"srv": {"command": "node", "args": ["s.js"], "cwd": "nowhere"}}},
    )
    result = import_servers(tmp_path / "config.toml", source)
    assert result.added == []
    assert "is not a directory" in dict(result.skipped)["srv"]


def test_import_existing_names_need_replace(tmp_path: Path) -> None:
    source = write_json(tmp_path / "c.json", CLAUDE_DESKTOP)
    path = tmp_path / "config.toml"
    path.write_text('# keep me\n[mcp.servers.github]\ncommand = "old"  # old one\n')
    result = import_servers(path, source)
    assert result.added == ["filesystem", "sqlite"]
    assert "already configured" in dict(result.skipped)["github"]
    assert list_servers(path)[0].command == "old"
    result = import_servers(path, source, replace=True)
    assert result.replaced == ["filesystem", "github", "sqlite"]
    assert result.added == []
    assert next(s for s in list_servers(path) if s.name == "github").command == "npx"
    assert path.read_text().startswith("# keep me\n")


def test_import_nothing_new_writes_nothing(tmp_path: Path) -> None:
    source = write_json(tmp_path / "c.json", {"mcpServers": {"r": {"type": "http", "url": "u"}}})
    path = tmp_path / "config.toml"
    result = import_servers(path, source)
    assert result.added == [] and len(result.skipped) == 1
    assert not path.exists()


def test_import_claude_json_notes_project_servers(tmp_path: Path) -> None:
    source = write_json(
        tmp_path / ".claude.json",
        {
            "mcpServers": {"a": {"command": "x"}},
            "projects": {"/p": {"mcpServers": {"b": {"command": "y"}}}},
        },
    )
    result = import_servers(tmp_path / "config.toml", source)
    assert result.added == ["a"]
    assert "project-scoped" in dict(result.notes)["projects"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"mcpServers": {', "invalid JSON"),
        ("[1, 2]", 'expected a JSON object with "mcpServers"'),
        ('{"other": 1}', 'no "mcpServers" object'),
        ('{"mcpServers": []}', '"mcpServers" is not a JSON object'),
    ],
)
def test_import_bad_source_files(tmp_path: Path, content: str, expected: str) -> None:
    source = tmp_path / "c.json"
    source.write_text(content)
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as info:
        import_servers(path, source)
    assert expected in str(info.value)
    assert str(source) in str(info.value)
    assert not path.exists()


def test_import_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        import_servers(tmp_path / "config.toml", tmp_path / "nope.json")


def test_replace_keeps_an_env_sub_table_a_sub_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mcp.servers.gh]\ncommand = "npx"\n\n'
        '[mcp.servers.gh.env]\nargs = "x"  # a variable named args\nOLD = "1"\n'
    )
    add_server(path, ServerConfig("gh", "npx", env=(("NEW", "2"), ("args", "y"))), replace=True)
    text = path.read_text()
    assert "[mcp.servers.gh.env]" in text
    assert 'args = "y"  # a variable named args' in text
    assert "OLD" not in text
    assert list_servers(path)[0].env_dict() == {"NEW": "2", "args": "y"}


def test_add_then_remove_after_a_table_without_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = 'a = 1\n[mcp.servers.x]\ncommand = "c"\n'
    path.write_text(original)
    add_server(path, ServerConfig("new", "n"))
    assert path.read_text() == original + '\n[mcp.servers.new]\ncommand = "n"\n'
    remove_server(path, "new")
    assert path.read_text() == original


def test_import_accepts_a_utf8_bom(tmp_path: Path) -> None:
    source = tmp_path / "claude_desktop_config.json"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(CLAUDE_DESKTOP).encode())
    assert import_servers(tmp_path / "config.toml", source).added == [
        "filesystem",
        "github",
        "sqlite",
    ]
