"""The operator's CLI, driven as a person types it (SPEC §5): `mcp ps`,
`mcp restart | start | stop`, `--reload` on edits, and the mistakes that
used to be accepted silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.mcp._support import wait_until
from tests.mcp.conftest import BICAMERAL, McpHome

HOSTILE = str(Path(__file__).parent / "servers" / "hostile.py")


def ps(home: McpHome, *args: str) -> dict[str, Any]:
    out = home.cli("mcp", "ps", *args)
    assert out.returncode == 0, out
    return dict(json.loads(out.stdout))


def states(home: McpHome) -> dict[str, str]:
    """Each running server's state, from `daemon status` (the fast path: cheap to poll)."""
    out = home.cli("daemon", "status", "--json")
    tree = json.loads(out.stdout).get("tree") or {}
    adapters = next((c for c in tree.get("children", []) if c["name"] == "adapters"), {})
    shown = {"ready": "ready", "restarting": "backoff", "starting": "starting"}
    result = {}
    for entry in adapters.get("children", []):
        own = entry.get("started_value") or {}
        if entry["state"] in ("failed", "stopped"):
            result[entry["name"]] = entry["state"]
        else:
            result[entry["name"]] = shown.get(own.get("state"), own.get("state", "starting"))
    return result


def configure(home: McpHome) -> None:
    home.configure(
        {
            "good": home.light_server("good"),
            "mute": {"command": sys.executable, "args": [HOSTILE, "mute", str(home.path)]},
            "off": {**home.light_server("off"), "enabled": False},
        }
    )


def test_ps_joins_the_configuration_with_the_live_daemon(mcp_home: McpHome) -> None:
    configure(mcp_home)
    before = ps(mcp_home)
    assert before["daemon"] == "stopped"
    assert {s["name"]: s["state"] for s in before["servers"]} == {
        "good": "stopped",
        "mute": "stopped",
        "off": "disabled",
    }
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["good"] == "ready")
    rows = {s["name"]: s for s in ps(mcp_home)["servers"]}
    assert rows["good"]["tools"] > 0 and rows["good"]["pid"] > 0
    assert rows["good"]["memory_bytes"] > 0 and rows["good"]["uptime_s"] >= 0
    assert rows["mute"]["state"] == "starting" and rows["mute"]["pid"] > 0
    assert rows["off"]["state"] == "disabled" and rows["off"]["pid"] is None
    one = ps(mcp_home, "good")
    assert [s["name"] for s in one["servers"]] == ["good"]
    unknown = mcp_home.cli("mcp", "ps", "nope")
    assert unknown.returncode == 1 and "configured: good, mute, off" in unknown.stderr


def test_stop_start_restart_one_server_of_the_running_daemon(mcp_home: McpHome) -> None:
    configure(mcp_home)
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["good"] == "ready")
    first = ps(mcp_home, "good")["servers"][0]["pid"]
    stopped = mcp_home.cli("mcp", "stop", "good")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["status"] == "stopped"
    assert states(mcp_home)["good"] == "stopped"
    assert not any(p.pid == first for p in mcp_home.upstreams())
    # A reload that does not change it leaves it stopped.
    assert mcp_home.cli("daemon", "reload").returncode == 0
    assert states(mcp_home)["good"] == "stopped"
    assert mcp_home.cli("mcp", "start", "good").returncode == 0
    wait_until(lambda: states(mcp_home)["good"] == "ready")
    second = ps(mcp_home, "good")["servers"][0]["pid"]
    assert second != first
    assert mcp_home.cli("mcp", "restart", "good").returncode == 0
    wait_until(lambda: states(mcp_home)["good"] == "ready")
    assert ps(mcp_home, "good")["servers"][0]["pid"] not in (first, second)
    disabled = mcp_home.cli("mcp", "restart", "off")
    assert disabled.returncode == 1
    assert "is disabled" in disabled.stderr and "enabled = true" in disabled.stderr
    assert json.loads(disabled.stdout)["status"] == "failed"


def test_control_without_a_daemon_says_so_in_one_line(mcp_home: McpHome) -> None:
    configure(mcp_home)
    out = mcp_home.cli("mcp", "restart", "good")
    assert out.returncode == 1
    assert out.stderr.strip().endswith("start it: bicameral daemon start")
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_crash_looping_server_failed_is_revived_by_restart_and_by_reload(
    mcp_home: McpHome,
) -> None:
    flag = mcp_home.path / "fail"
    flag.write_text("")
    mcp_home.configure(
        {"loop": mcp_home.light_server("loop", env={"TESTSERVER_FAIL_IF": str(flag)})}
    )
    mcp_home.env["BICAMERAL_MCP_BACKOFF"] = "0.05"  # the crash loop ends in a second
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["loop"] == "failed", timeout=90)
    flag.unlink()
    reloaded = mcp_home.cli("daemon", "reload")
    assert reloaded.returncode == 0 and json.loads(reloaded.stdout)["restarted"] == ["loop"]
    wait_until(lambda: states(mcp_home)["loop"] == "ready")


def test_a_failed_server_shows_when_it_is_retried_until_a_restart_cancels_that(
    mcp_home: McpHome,
) -> None:
    flag = mcp_home.path / "fail"
    flag.write_text("")
    mcp_home.configure(
        {"loop": mcp_home.light_server("loop", env={"TESTSERVER_FAIL_IF": str(flag)})}
    )
    mcp_home.env["BICAMERAL_MCP_BACKOFF"] = "0.05"  # the crash loop ends in a second
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["loop"] == "failed", timeout=90)
    (row,) = ps(mcp_home)["servers"]
    assert row["state"] == "failed"
    # Down, and retried by the daemon 5 minutes after its supervisor gave up (SPEC §8.2).
    assert row["retry_at"] == pytest.approx(time.time() + 300, abs=60)
    flag.unlink()
    assert mcp_home.cli("mcp", "restart", "loop").returncode == 0
    wait_until(lambda: states(mcp_home)["loop"] == "ready")
    (row,) = ps(mcp_home)["servers"]
    assert row["state"] == "ready" and row["retry_at"] is None


def test_add_and_remove_with_reload_apply_at_once(mcp_home: McpHome, tmp_path: Path) -> None:
    mcp_home.configure({})
    assert mcp_home.cli("daemon", "start").returncode == 0
    server = mcp_home.light_server("extra")
    out = mcp_home.cli("mcp", "add", "extra", "--reload", "--", server["command"], *server["args"])
    assert out.returncode == 0, out
    assert "reloaded the daemon: added extra" in out.stderr
    wait_until(lambda: states(mcp_home).get("extra") == "ready")
    out = mcp_home.cli("mcp", "remove", "extra", "--reload")
    assert out.returncode == 0 and "removed extra" in out.stderr, out
    assert ps(mcp_home)["servers"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mcpServers.a]\ncommand = 'x'\n", "'mcpServers' at the top level"),
        ("[servers.a]\ncommand = 'x'\n", "'servers' at the top level"),
        ("foo = 1\n", "'foo' at the top level"),
    ],
)
def test_a_misplaced_table_fails_start_naming_it(
    mcp_home: McpHome, text: str, expected: str
) -> None:
    (mcp_home.path / "config.toml").write_text(text)
    out = mcp_home.cli("daemon", "start")
    assert out.returncode == 1, out
    assert expected in out.stderr and "[mcp]" in out.stderr
    assert mcp_home.descriptor() is None


def test_mcp_list_of_a_missing_config_is_an_error(mcp_home: McpHome) -> None:
    out = mcp_home.cli("mcp", "list", "--config", "/nonexistent/config.toml")
    assert out.returncode == 1
    assert "config file /nonexistent/config.toml does not exist" in out.stderr


def test_short_help_version_and_clean_help_text() -> None:
    version = subprocess.run([BICAMERAL, "-V"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("bicameral ")
    for argv in (["-h"], ["daemon", "-h"], ["mcp", "add", "-h"], ["mcp", "ps", "-h"]):
        out = subprocess.run(
            [BICAMERAL, *argv],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": "120"},
        )
        for placeholder in ("<bool>", "<str>", "<list", "{name}", "{NAME}"):
            assert placeholder not in out.stdout, (argv, out.stdout)
    root = subprocess.run([BICAMERAL, "-h"], capture_output=True, text=True, check=True).stdout
    assert "--install-completion" in root


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_the_bridge_run_by_hand_on_a_terminal_says_what_it_is_for(mcp_home: McpHome) -> None:
    command = f"{BICAMERAL} --home {mcp_home.path} mcp --server good"
    out = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        env=mcp_home.env,
        check=False,
    )
    assert out.returncode == 2, out
    assert "MCP stdio bridge that MCP clients launch" in out.stdout
    assert mcp_home.descriptor() is None  # no daemon started for nobody


def test_the_bridge_to_a_disabled_server_says_it_is_disabled(mcp_home: McpHome) -> None:
    configure(mcp_home)
    out = subprocess.run(
        [BICAMERAL, *mcp_home.bridge_argv("off")],
        input=b"",
        capture_output=True,
        env=mcp_home.env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    message = out.stderr.decode()
    assert "'off' is disabled in config.toml" in message and "enabled = true" in message
    assert message.count("\n") == 1


def test_a_rejected_reload_prints_json_and_a_missing_cwd_is_named(mcp_home: McpHome) -> None:
    mcp_home.configure({"nowhere": {**mcp_home.light_server("nowhere"), "cwd": "/nonexistent/dir"}})
    assert mcp_home.cli("daemon", "start").returncode == 0
    entry = wait_until(
        lambda: (
            (e := {s["name"]: s for s in ps(mcp_home)["servers"]}["nowhere"])["last_error"] and e
        )
    )
    assert "its cwd /nonexistent/dir is not a directory" in entry["last_error"]
    (mcp_home.path / "config.toml").write_text("[mcp.servers.x]\ncomand = 'typo'\n")
    out = mcp_home.cli("daemon", "reload")
    assert out.returncode == 1
    body = json.loads(out.stdout)
    assert body["status"] == "failed" and "unknown key 'comand'" in body["error"]


def test_a_half_edited_config_never_blocks_operating_the_running_daemon(
    mcp_home: McpHome,
) -> None:
    """`mcp ps` and `mcp restart|start|stop` act on what the daemon runs, with a
    one-line warning that config.toml has an error, never a refusal."""
    configure(mcp_home)
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["good"] == "ready")
    config = mcp_home.path / "config.toml"
    config.write_text(config.read_text() + "\n[mcp.servers.half\ncommand = \n")
    out = mcp_home.cli("mcp", "ps")
    assert out.returncode == 0, out
    assert "config.toml" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out
    rows = {r["name"]: r for r in json.loads(out.stdout)["servers"]}
    assert rows["good"]["state"] == "ready", rows
    assert "mute" in rows, rows
    for action, state in (("stop", "stopped"), ("start", "ready"), ("restart", "ready")):
        done = mcp_home.cli("mcp", action, "good")
        assert done.returncode == 0, (action, done)
        assert "config.toml" in done.stderr, done
        wait_until(lambda s=state: states(mcp_home)["good"] == s)  # type: ignore[misc]
    unknown = mcp_home.cli("mcp", "restart", "nope")
    assert unknown.returncode == 1 and "nope" in unknown.stderr, unknown


def test_a_call_to_a_stopped_server_says_how_to_start_it_at_once(mcp_home: McpHome) -> None:
    """No wait for ready_timeout: a stopped server will not come back by itself."""
    import time

    import trio
    from mcp.shared.exceptions import MCPError

    from tests.mcp._support import session

    configure(mcp_home)
    mcp_home.configure(
        {"good": mcp_home.light_server("good")}, daemon="[mcp]\nready_timeout = 30\n"
    )

    async def main() -> None:
        async with session(mcp_home, "good") as client:
            assert mcp_home.cli("mcp", "stop", "good").returncode == 0
            t0 = time.monotonic()
            with pytest.raises(MCPError, match="bicameral mcp start good") as info:
                await client.call_tool("echo", {"text": "x"})
            assert time.monotonic() - t0 < 10, "waited for ready_timeout"
            assert "waiting" not in str(info.value), info.value

    trio.run(main)


def _ps_on_a_terminal(home: McpHome, columns: int) -> str:
    """`mcp ps` as a person sees it: a table on a terminal `columns` wide."""
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [BICAMERAL, "--home", str(home.path), "mcp", "ps"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env={**home.env, "COLUMNS": str(columns)},
            timeout=30,
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
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_ps_shows_the_cause_and_a_broken_server_logs_no_traceback(mcp_home: McpHome) -> None:
    """The cause (`cannot start 'uvx-nope'`) is on the screen at 80 columns, and each
    restart of a misconfigured server is one log line, not a supervisor traceback."""
    mcp_home.configure({"broken": {"command": "uvx-nope", "args": ["some-server"]}})
    mcp_home.env["BICAMERAL_MCP_BACKOFF"] = "0.05"  # the crash loop ends in a second
    assert mcp_home.cli("daemon", "start").returncode == 0
    wait_until(lambda: states(mcp_home)["broken"] == "failed", timeout=90)
    screen = _ps_on_a_terminal(mcp_home, 80)
    assert "cannot start 'uvx-nope'" in screen, screen
    assert all(len(line) <= 80 for line in screen.splitlines()), screen
    row = ps(mcp_home, "broken")["servers"][0]
    assert row["last_error"].startswith("cannot start 'uvx-nope'"), row
    log = (mcp_home.path / "daemon.log").read_text()
    assert "Traceback" not in log, log
    causes = [line for line in log.splitlines() if "cannot start 'uvx-nope'" in line]
    restarts = row["restarts"]
    assert restarts >= 5 and len(causes) <= restarts + 3, causes  # one line a restart


def test_first_run_papercuts(mcp_home: McpHome) -> None:
    """import --help names remote servers; completion offers server names; `daemon logs
    --server NOPE` is an error; a busy --http port suggests another one, or port 0."""
    import socket

    help_text = mcp_home.cli("mcp", "import", "--help")
    assert help_text.returncode == 0 and "remote" in help_text.stdout, help_text
    configure(mcp_home)
    for words in (["mcp", "restart", ""], ["mcp", "stop", "g"], ["mcp", "--server", ""]):
        line = ["bicameral", "--home", str(mcp_home.path), *words]
        out = subprocess.run(
            [BICAMERAL],
            capture_output=True,
            text=True,
            env={
                **mcp_home.env,
                "_BICAMERAL_COMPLETE": "complete_bash",
                "COMP_WORDS": " ".join(line),
                "COMP_CWORD": str(len(line) - 1),
            },
            timeout=30,
            check=False,
        )
        offered = set(out.stdout.split())
        wanted = {"good", "mute", "off"} if not words[-1] else {"good"}
        assert offered == wanted, (words, out)
    logs = mcp_home.cli("daemon", "logs", "--server", "NOPE")
    assert logs.returncode == 1, logs
    assert "NOPE" in logs.stderr and "good" in logs.stderr, logs
    assert len(logs.stderr.strip().splitlines()) == 1, logs
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = mcp_home.cli("daemon", "start", "--http", f"127.0.0.1:{port}")
    assert start.returncode == 1, start
    assert "port 0" in start.stderr and "another port" in start.stderr, start
