"""Resource limits through the real daemon (issue 6, SPEC §7).

The protocol server has the limits (`bicameral.protocol.Limits`); these tests
check that the daemon applies them, that they can be set in ``config.toml``
(``[daemon.limits]``), and that a client that sends without reading can
neither grow the daemon's memory nor slow another client down, on plain
JSON-RPC connections and on MCP sessions alike.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time

import pytest

from bicameral.protocol import BlockingClient

from .conftest import Home, fd_count, read_lines, rpc, rss_kib, send_lines, wait_for

LIMITS = """
[daemon.limits]
max_frame = 2048
max_in_flight = 4
max_connections = 8
partial_frame_timeout = 0.5
"""


def closed_by_peer(sock: socket.socket, timeout: float) -> bytes:
    """Read until the daemon closes ``sock``; everything it sent first."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def flood_without_reading(sock: socket.socket, line: bytes, budget: int, stall: float) -> int:
    """Send ``line`` over and over, never reading, until ``budget`` bytes are sent
    or the daemon has taken nothing for ``stall`` seconds. Returns the bytes sent."""
    sock.setblocking(False)
    payload = line * max(1, 65536 // len(line))
    sent = 0
    while sent < budget:
        try:
            sent += sock.send(payload)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:
                break
    return sent


def bystander_latency(home: Home, calls: int = 20) -> float:
    """The slowest of ``calls`` system.version round trips on a fresh connection."""
    worst = 0.0
    with BlockingClient.connect_unix(str(home.socket), timeout=10) as client:
        for _ in range(calls):
            t0 = time.monotonic()
            client.call("system.version", timeout=10)
            worst = max(worst, time.monotonic() - t0)
    return worst


def test_a_client_that_sends_but_never_reads_is_throttled_and_starves_nobody(
    home: Home,
) -> None:
    pid = home.start()
    rss_before = rss_kib(pid)
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system.health"}).encode() + b"\n"
    with home.connect() as hog:
        sent = flood_without_reading(hog, request, budget=64 << 20, stall=1.0)
        # The daemon stopped reading once its answers backed up: of 64 MiB
        # offered it took the socket buffers' worth and a few frames.
        assert sent < 8 << 20, f"the daemon read {sent} bytes from a client that never reads"
        assert bystander_latency(home) < 2.0
        assert rss_kib(pid) - rss_before < 32 * 1024
    wait_for(lambda: served(home), what="the daemon to drop the hog")
    home.stop()


def test_an_mcp_session_that_sends_but_never_reads_is_throttled(home: Home) -> None:
    pid = home.start()
    rss_before = rss_kib(pid)
    with home.connect() as hog:
        assert rpc(hog, "system.attach", {"mode": "mcp"})["result"]["mode"] == "mcp"
        call = (
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "bicameral__status", "arguments": {}},
                }
            ).encode()
            + b"\n"
        )
        sent = flood_without_reading(hog, call, budget=4 << 20, stall=1.0)
        assert sent < 2 << 20, f"the daemon read {sent} bytes from an MCP client that never reads"
        assert bystander_latency(home) < 2.0
        assert rss_kib(pid) - rss_before < 32 * 1024
    home.stop()


def test_the_default_connection_cap_closes_the_extra_ones_and_serves_the_rest(
    home: Home,
) -> None:
    pid = home.start()
    fds_before = fd_count(pid)
    with BlockingClient.connect_unix(str(home.socket), timeout=10) as bystander:
        bystander.call("system.version")
        extra: list[socket.socket] = []
        try:
            for _ in range(1100):
                extra.append(home.connect())
            # 1024 are served (the bystander among them); the rest are closed at once.
            closed = wait_for(
                lambda: sum(1 for s in extra if _is_closed(s)) >= 1100 + 1 - 1024,
                what="the connections over the cap to be closed",
            )
            assert closed
            assert bystander.call("system.version")["protocol_version"] == "1"
        finally:
            for s in extra:
                s.close()
    wait_for(lambda: fd_count(pid) <= fds_before, what="the daemon to close them all")
    assert bystander_latency(home, 1) < 2.0
    home.stop()


def served(home: Home) -> bool:
    """Whether a new connection is served now (False while the daemon is full)."""
    try:
        return bystander_latency(home, 1) < 2.0
    except (ConnectionError, TimeoutError):
        return False


def _is_closed(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def limited(home: Home) -> Home:
    home.install_probe_plugin()
    home.configure(LIMITS)
    home.start()
    return home


def test_limits_are_read_from_config_max_frame(limited: Home) -> None:
    with limited.connect() as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"system.version","params":["' + b"x" * 3000)
        reply = json.loads(closed_by_peer(sock, 5).split(b"\n")[0])
        assert reply["error"]["code"] == -32600
    with limited.connect() as sock:
        assert rpc(sock, "system.version", ["x" * 1500])["result"]["protocol_version"] == "1"


def test_limits_are_read_from_config_partial_frame_timeout(limited: Home) -> None:
    with limited.connect() as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,')
        t0 = time.monotonic()
        assert closed_by_peer(sock, 5) == b""
        assert 0.4 < time.monotonic() - t0 < 5.0
    with limited.connect() as idle:
        # Between frames a connection may stay idle as long as it likes.
        with pytest.raises(TimeoutError):
            idle.settimeout(1.0)
            idle.recv(1)
        assert rpc(idle, "system.version")["result"]["protocol_version"] == "1"


def test_limits_are_read_from_config_max_connections(limited: Home) -> None:
    socks = [limited.connect() for _ in range(8)]
    try:
        for s in socks:
            assert rpc(s, "system.version")["result"]["protocol_version"] == "1"
        with limited.connect() as ninth:
            assert closed_by_peer(ninth, 5) == b""
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: served(limited), what="a free slot once they are closed")


def test_limits_are_read_from_config_max_in_flight(limited: Home) -> None:
    with limited.connect() as sock:
        send_lines(
            sock,
            *[
                {"jsonrpc": "2.0", "id": i, "method": "probe.wait", "params": {"seconds": 0.2}}
                for i in range(12)
            ],
        )
        replies = read_lines(sock, 12)
        assert sorted(r["id"] for r in replies) == list(range(12))
        assert rpc(sock, "probe.peak", msg_id="peak")["result"] == 4


def test_an_invalid_limits_table_fails_start_naming_the_field(home: Home) -> None:
    home.configure("[daemon.limits]\nmax_frame = -1\n")
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "max_frame" in run.stderr
    assert "Traceback" not in run.stderr
    home.configure("[daemon.limits]\nmax_frames = 10\n")
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "max_frames" in run.stderr


def test_reload_keeps_the_running_limits_and_says_a_change_needs_a_restart(
    limited: Home,
) -> None:
    limited.configure(LIMITS.replace("max_frame = 2048", "max_frame = 4096"))
    assert limited.cli("daemon", "reload").code == 0
    assert "apply when the daemon restarts" in limited.log.read_text()
    with limited.connect() as sock:  # still 2048
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"system.version","params":["' + b"x" * 3000)
        assert json.loads(closed_by_peer(sock, 5).split(b"\n")[0])["error"]["code"] == -32600
    limited.configure(LIMITS.replace("max_frame = 2048", "max_frame = 0"))
    bad = limited.cli("daemon", "reload")
    assert bad.code == 1 and "max_frame" in bad.stderr, bad


def test_mcp_sessions_count_against_the_same_max_buffered(home: Home) -> None:
    """Unfinished MCP messages share `max_buffered` with everything else the daemon
    holds: of two sessions each holding 700 KiB of a message under a 1 MiB limit,
    one is closed with an error, the other is answered, and RPC goes on."""
    home.configure("[daemon.limits]\nmax_buffered = 1048576\n")
    home.start()
    head = (
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call",'
        b'"params":{"name":"bicameral__status","arguments":{},"_meta":{"pad":"'
    )
    body = b"x" * (700 << 10)
    with home.connect() as first, home.connect() as second:
        for sock in (first, second):
            assert rpc(sock, "system.attach", {"mode": "mcp"})["result"]["mode"] == "mcp"
        first.sendall(head + body)
        with contextlib.suppress(OSError):  # it may be closed while it sends
            second.sendall(head + body)
        readable, _, _ = select.select([first, second], [], [], 15)
        assert len(readable) == 1, readable
        (refused,) = readable
        kept = second if refused is first else first
        reply = json.loads(closed_by_peer(refused, 10).split(b"\n")[0])
        assert reply["error"]["code"] == -32600
        assert "too much unfinished input" in reply["error"]["message"]
        kept.sendall(b'"}}}\n')
        (answer,) = read_lines(kept, 1)
        assert answer["id"] == 7 and "result" in answer, str(answer)[:300]
    with home.connect() as client:
        assert rpc(client, "system.version")["result"]["protocol_version"] == "1"
    home.stop()
