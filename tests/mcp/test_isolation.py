"""One broken client or server never stalls anyone else (SPEC §8.3).

Each test runs a real daemon with a deliberately broken peer beside a
bystander: an RPC client on the daemon's socket, and where it matters an MCP
session to a healthy server. The bystander must be answered throughout, the
daemon's memory must stay bounded, and the broken peer alone pays.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bicameral.protocol import BlockingClient
from tests.mcp._support import wait_until
from tests.mcp.conftest import BICAMERAL, McpHome

HOSTILE = str(Path(__file__).parent / "servers" / "hostile.py")


def hostile(home: McpHome, mode: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": [HOSTILE, mode, "--home-tag", str(home.path)]}


def start(home: McpHome, servers: dict[str, dict[str, Any]], limits: str = "") -> int:
    home.configure(servers)
    if limits:
        path = home.path / "config.toml"
        path.write_text(path.read_text() + "\n[daemon.limits]\n" + limits + "\n")
    out = home.cli("daemon", "start")
    assert out.returncode == 0, out
    return home.daemon_pid()


def bystander_calls(home: McpHome, n: int = 50) -> float:
    """`n` system.version calls on a fresh connection; the slowest, in seconds."""
    descriptor = home.descriptor()
    assert descriptor is not None
    worst = 0.0
    with BlockingClient.connect_unix(descriptor["socket_path"], timeout=10) as client:
        for _ in range(n):
            t0 = time.monotonic()
            client.call("system.version", timeout=10)
            worst = max(worst, time.monotonic() - t0)
    return worst


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def server_state(home: McpHome, name: str) -> dict[str, Any]:
    out = home.cli("daemon", "status", "--json")
    tree = json.loads(out.stdout)["tree"]
    adapters = next(c for c in tree["children"] if c["name"] == "adapters")
    entry = next(c for c in adapters["children"] if c["name"] == name)
    return dict(entry.get("started_value") or {})


def _holds_urandom(pid: int) -> bool:
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}") == "/dev/urandom":
                return True
        except FileNotFoundError:  # closed meanwhile
            continue
    return False


def test_a_bridge_fed_dev_urandom_stalls_nobody(mcp_home: McpHome) -> None:
    pid = start(mcp_home, {"good": mcp_home.light_server("good")})
    with open("/dev/urandom", "rb") as noise:
        bridge = subprocess.Popen(
            [BICAMERAL, *mcp_home.bridge_argv("good")],
            stdin=noise,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=mcp_home.env,
        )
    try:
        # The bridge hands its stdin to the daemon and lets go of it: from
        # then on the daemon itself reads the noise.
        wait_until(lambda: not _holds_urandom(bridge.pid))
        for _ in range(5):
            bystander_calls(mcp_home, 100)  # a frozen daemon times out here
        assert rss_mib(pid) < 400
    finally:
        bridge.kill()
        bridge.wait()
    stop = mcp_home.cli("daemon", "stop", "--timeout", "10")
    assert stop.returncode == 0 and not json.loads(stop.stdout).get("killed"), stop


@pytest.mark.parametrize("mode", ["flood", "noise"])
def test_a_server_flooding_notifications_or_junk_lines_stalls_nobody(
    mcp_home: McpHome, mode: str
) -> None:
    pid = start(mcp_home, {"bad": hostile(mcp_home, mode), "good": mcp_home.light_server("good")})
    seen: list[Any] = []

    def ready(name: str) -> bool:
        state = server_state(mcp_home, name)
        seen.append((name, state.get("state"), state.get("last_error")))
        return state.get("state") == "ready"

    try:
        wait_until(lambda: ready("good"))
        wait_until(lambda: ready("bad"))
    except AssertionError:
        raise AssertionError(f"states seen: {seen[-6:]}") from None
    # A session attached to the bad server: its flood is what it receives.
    bridge = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv("bad")],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=mcp_home.env,
    )
    try:
        assert bridge.stdin is not None
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}},
        }
        bridge.stdin.write(json.dumps(init).encode() + b"\n")
        bridge.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        bridge.stdin.flush()
        for _ in range(5):
            bystander_calls(mcp_home, 40)
        assert rss_mib(pid) < 400, "the flood was queued without bound"
    finally:
        bridge.kill()
        bridge.wait()
    stop = mcp_home.cli("daemon", "stop", "--timeout", "10")
    assert stop.returncode == 0 and not json.loads(stop.stdout).get("killed"), stop


def test_a_server_line_that_never_ends_is_cut_at_max_frame(mcp_home: McpHome) -> None:
    pid = start(
        mcp_home,
        {"bad": hostile(mcp_home, "endless"), "good": mcp_home.light_server("good")},
        limits="max_frame = 1048576",
    )
    # Its first instance: listed (which starts the endless line), then cut.
    state = wait_until(
        lambda: (
            (s := server_state(mcp_home, "bad")).get("last_error")
            and "max_frame" in s["last_error"]
            and s
        )
    )
    assert "line over" in state["last_error"], state
    bystander_calls(mcp_home, 100)
    assert rss_mib(pid) < 300
    wait_until(lambda: server_state(mcp_home, "good").get("state") == "ready")


def test_a_response_with_an_unusable_id_is_logged_and_the_session_goes_on(
    mcp_home: McpHome,
) -> None:
    start(mcp_home, {"odd": hostile(mcp_home, "badid")})
    wait_until(lambda: server_state(mcp_home, "odd").get("state") == "ready")
    first_pid = server_state(mcp_home, "odd")["pid"]
    bridge = subprocess.run(
        [BICAMERAL, *mcp_home.bridge_argv("odd")],
        input=b"\n".join(
            json.dumps(m).encode()
            for m in (
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {}},
                },
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                *(
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"n": i}},
                    }
                    for i in range(2, 8)
                ),
            )
        )
        + b"\n",
        capture_output=True,
        env=mcp_home.env,
        timeout=60,
        check=False,
    )
    answers = [json.loads(line) for line in bridge.stdout.splitlines()]
    calls = {a["id"]: a for a in answers if a.get("id", 0) >= 2}
    assert sorted(calls) == list(range(2, 8)), answers
    assert all("result" in a for a in calls.values()), answers
    assert server_state(mcp_home, "odd")["pid"] == first_pid  # never restarted for it


def test_fds_passed_that_cannot_be_used_are_closed(mcp_home: McpHome) -> None:
    pid = start(mcp_home, {"good": mcp_home.light_server("good")})
    descriptor = mcp_home.descriptor()
    assert descriptor is not None

    def attach_with_opath_fds() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(descriptor["socket_path"])
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "system.attach",
            "params": {"mode": "mcp", "server": "good", "stdio": "pass"},
        }
        sock.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while b"\n" not in answer:
            answer += sock.recv(4096)
        fds = [os.open("/", os.O_PATH), os.open("/", os.O_PATH)]
        sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            sock.recv(64)  # the daemon closes the session
        sock.close()

    attach_with_opath_fds()
    time.sleep(0)
    baseline = len(os.listdir(f"/proc/{pid}/fd"))
    for _ in range(50):
        attach_with_opath_fds()
    wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= baseline + 2, timeout=10)
    bystander_calls(mcp_home, 10)


def test_pipelined_requests_are_answered_in_order_even_when_stdin_closes_at_once(
    mcp_home: McpHome,
) -> None:
    start(mcp_home, {"good": mcp_home.light_server("good")})
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}},
    }
    lines = [
        init,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    out = subprocess.run(
        [BICAMERAL, *mcp_home.bridge_argv("good")],
        input=b"".join(json.dumps(m).encode() + b"\n" for m in lines),
        capture_output=True,
        env=mcp_home.env,
        timeout=60,
        check=False,
    )
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a.get("id") for a in answers if "id" in a] == [1, 2, 3], answers
    assert out.returncode == 0


def test_a_requests_progress_reaches_the_client_before_its_response(mcp_home: McpHome) -> None:
    # The server writes its progress and the response in one write: they
    # reach the daemon in one read, and must leave it in the same order.
    start(mcp_home, {"p": hostile(mcp_home, "progress")})
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}},
    }
    proc = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv("p")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=mcp_home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(init).encode() + b"\n")
    proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1
    for n in range(2, 42):
        call = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {}, "_meta": {"progressToken": f"t{n}"}},
        }
        proc.stdin.write(json.dumps(call).encode() + b"\n")
        proc.stdin.flush()
        seen: list[float] = []
        while True:
            message = json.loads(proc.stdout.readline())
            if message.get("method") == "notifications/progress":
                assert message["params"]["progressToken"] == f"t{n}"
                seen.append(message["params"]["progress"])
            elif message.get("id") == n:
                break
        assert seen == [float(i) for i in range(1, 11)], (n, seen)
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()


def test_eight_servers_that_never_answer_do_not_delay_the_start(mcp_home: McpHome) -> None:
    servers = {f"mute{i}": hostile(mcp_home, "mute") for i in range(8)}
    servers["dead"] = hostile(mcp_home, "crash")
    mcp_home.configure(servers)
    out = mcp_home.cli("daemon", "start")
    assert out.returncode == 0, out
    body = json.loads(out.stdout)
    assert sum(body["servers"].values()) == 9, body
    assert body["servers"].get("starting", 0) >= 8, body  # readiness waited for none
    bystander_calls(mcp_home, 10)
    restarted = mcp_home.cli("daemon", "restart")
    assert restarted.returncode == 0, restarted
    assert json.loads(mcp_home.cli("daemon", "status", "--json").stdout)["status"] == "running"


def test_a_resource_link_a_tool_returns_can_be_read_back_in_the_aggregated_view(
    mcp_home: McpHome,
) -> None:
    start(mcp_home, {"docs": hostile(mcp_home, "link")})
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}},
    }
    proc = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=mcp_home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(message: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        while True:
            answer = json.loads(proc.stdout.readline())
            if answer.get("id") == message["id"]:
                return dict(answer)

    try:
        ask(init)
        call = {"name": "docs__echo", "arguments": {}}
        result = ask({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        (link,) = result["result"]["content"]
        assert link["uri"] == "bicameral://docs/file:///doc.txt", link
        read = ask(
            {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": link["uri"]}}
        )
        (content,) = read["result"]["contents"]
        assert content == {"uri": link["uri"], "text": "the doc"}
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
