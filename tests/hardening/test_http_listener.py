"""The HTTP listener under attack (issue 30, SPEC §10): floods, stalls, large bodies.

A real daemon with ``--http 127.0.0.1:0`` in a short state dir (the MCP
suite's `McpHome`), attacked over raw sockets the way the hostile run did:
idle connections that never show the token (with the daemon's descriptor
table made small, as a desktop's ``ulimit -n`` can), connections that send
half a request and stall, 500 POSTs at once, and large refused bodies.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
from mcp import Client

from tests.mcp._support import INITIALIZE, text
from tests.mcp.conftest import BICAMERAL, McpHome, mcp_home  # noqa: F401  (the fixture)

from .conftest import wait_for


def whole_response(sock: socket.socket) -> bytes:
    """One chunked HTTP response, read to its last chunk (it may come in several reads)."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def start(home: McpHome, nofile: int | None = None) -> tuple[str, int, str]:
    """Start the daemon with the listener on (under RLIMIT_NOFILE `nofile`); url, port, token."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    done = subprocess.run(
        [BICAMERAL, "--home", str(home.path), "daemon", "start", "--http", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=home.env,
        timeout=60,
        check=False,
        preexec_fn=limit,
    )
    assert done.returncode == 0, done.stderr
    descriptor = home.descriptor()
    assert descriptor is not None
    url = str(descriptor["http_url"])
    key = (home.path / "http.token").read_text().strip()
    return url, int(url.rpartition(":")[2]), key


def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def owner_post(port: int, key: str, timeout: float = 10.0) -> int:
    """The owner's initialize POST on a fresh connection: the HTTP status."""
    body = json.dumps(INITIALIZE).encode()
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Connection": "close",
    }
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request(port, "POST", "/mcp/alpha", headers, body))
        reply = read_until_closed(sock, timeout)
    return int(reply.split(b" ", 2)[1])


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the daemon sends until it closes `sock` (a reset counts as closed)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


class Flood:
    """Idle tokenless connections to `port`, opened again as fast as the daemon drops them."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.full = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        held: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                held = [s for s in held if not _closed(s)]
                while len(held) < self.size and not self.stop.is_set():
                    try:
                        held.append(socket.create_connection(("127.0.0.1", self.port), timeout=1))
                        self.opened += 1
                    except OSError:
                        self.full = True  # the backlog is full: as big as the flood gets
                        break
                time.sleep(0.01)
        finally:
            for sock in held:
                sock.close()

    def __enter__(self) -> Flood:
        self.thread.start()
        wait_for(lambda: self.opened >= self.size or self.full, 60, "the flood to be opened")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def _closed(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def daemon_fds(home: McpHome) -> int:
    return len(list(Path(f"/proc/{home.daemon_pid()}/fd").iterdir()))


@pytest.fixture
def home(mcp_home: McpHome) -> Iterator[McpHome]:  # noqa: F811
    yield mcp_home


def test_a_tokenless_flood_under_a_low_fd_limit_never_locks_the_owner_out(home: McpHome) -> None:
    """Finding 1: 600 idle tokenless connections, opened again as they are dropped,
    against a daemon whose descriptor table holds 256: the owner's HTTP request,
    `daemon status` and a bridge's call all work meanwhile, the daemon never runs
    out of descriptors, and the log has no traceback, only a line per burst."""
    home.configure({"alpha": home.light_server("alpha")})
    _, port, key = start(home, nofile=256)
    assert owner_post(port, key, timeout=30) == 200  # alpha is up before the flood
    with Flood(port, 600) as flood:
        # Behind the flood's connections in the backlog, but served.
        assert owner_post(port, key, timeout=30) == 200
        status = home.cli("daemon", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running" in status.stdout

        async def bridge() -> str:
            with trio.fail_after(30):
                async with Client(home.params("alpha")) as client:
                    return text(await client.call_tool("echo", {"text": "through the flood"}))

        assert trio.run(bridge) == "through the flood"
        # A server that starts during the flood finds descriptors (finding 9).
        restarted = home.cli("mcp", "restart", "alpha")
        assert restarted.returncode == 0, restarted.stderr
        assert trio.run(bridge) == "through the flood"
        assert daemon_fds(home) < 256 - 32  # the reserve is left alone
        assert flood.opened >= 600, flood.opened
    log = (home.path / "daemon.log").read_text()
    assert "Traceback" not in log
    assert log.count("EMFILE") <= 2, log[-2000:]


def test_tokenless_connections_are_cut_after_auth_timeout_and_none_lingers(
    home: McpHome,
) -> None:
    """Finding 1: a connection that never shows the token is closed after
    ``auth_timeout``; one that shows it is not; connections the client closes
    are closed at once (no CLOSE-WAIT until a keep-alive timer)."""
    home.configure(
        {"alpha": home.light_server("alpha")}, daemon="[daemon.http]\nauth_timeout = 1.0\n"
    )
    _, port, key = start(home)
    began = time.monotonic()
    idle = socket.create_connection(("127.0.0.1", port))
    assert read_until_closed(idle, 30) == b""
    assert time.monotonic() - began < 20
    idle.close()
    # A connection that showed the token stays past auth_timeout (keep-alive).
    owner = socket.create_connection(("127.0.0.1", port))
    owner.sendall(request(port, "GET", "/metrics", {"Authorization": f"Bearer {key}"}))
    owner.settimeout(10)
    assert whole_response(owner).startswith(b"HTTP/1.1 200")
    for _ in range(50):
        socket.create_connection(("127.0.0.1", port)).close()
    daemon = psutil.Process(home.daemon_pid())

    def lingering() -> list[Any]:
        return [c for c in daemon.net_connections("tcp") if c.status == psutil.CONN_CLOSE_WAIT]

    wait_for(lambda: not lingering(), 10, "no connection in CLOSE-WAIT")
    owner.sendall(request(port, "GET", "/metrics", {"Authorization": f"Bearer {key}"}))
    assert whole_response(owner).startswith(b"HTTP/1.1 200")
    owner.close()


def test_slow_headers_and_slow_bodies_are_cut_even_with_the_token(home: McpHome) -> None:
    """Finding 8: headers and bodies have read timeouts, authenticated or not."""
    home.configure(
        {"alpha": home.light_server("alpha")},
        daemon="[daemon.http]\nheader_timeout = 1.0\nbody_timeout = 1.0\n",
    )
    _, port, key = start(home)
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    auth["Accept"] = "application/json, text/event-stream"
    # Half the headers, then nothing.
    slow_head = socket.create_connection(("127.0.0.1", port))
    slow_head.sendall(request(port, "POST", "/mcp/alpha", auth)[:40])
    # All the headers with the token, a tenth of the body, then nothing.
    slow_body = socket.create_connection(("127.0.0.1", port))
    head = request(port, "POST", "/mcp/alpha", auth, b"x" * 1000)
    slow_body.sendall(head[: head.index(b"\r\n\r\n") + 4 + 100])
    began = time.monotonic()
    cut = read_until_closed(slow_head, 30)  # returns once the daemon closes it
    assert cut == b"" or cut.startswith(b"HTTP/1.1 408"), cut[:200]
    answer = read_until_closed(slow_body, 30)
    assert time.monotonic() - began < 20
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_timeout" in answer
    # Neither slowed anybody else down.
    assert owner_post(port, key) == 200
    slow_head.close()
    slow_body.close()


def test_500_concurrent_posts_are_all_answered_none_reset(home: McpHome) -> None:
    """Finding 7: the listen backlog fits 500 POSTs at once: none is reset."""
    home.configure({"alpha": home.light_server("alpha")})
    _, port, key = start(home)
    ping = json.dumps(INITIALIZE).encode()
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Connection": "close",
    }
    payload = request(port, "POST", "/mcp/alpha", headers, ping)
    statuses: list[Any] = []

    async def one() -> None:
        try:
            sock = await trio.open_tcp_stream("127.0.0.1", port)
            async with sock:
                await sock.send_all(payload)
                data = b""
                while chunk := await sock.receive_some(65536):
                    data += chunk
            statuses.append(int(data.split(b" ", 2)[1]) if data else "closed")
        except (OSError, trio.BrokenResourceError) as exc:
            statuses.append(repr(exc))

    async def flood() -> None:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for _ in range(500):
                    nursery.start_soon(one)

    trio.run(flood)
    failed = [s for s in statuses if not isinstance(s, int)]
    assert not failed, f"{len(failed)} of 500 failed, e.g. {failed[:3]}"
    assert len(statuses) == 500


def test_memory_goes_back_after_large_refused_bodies(home: McpHome) -> None:
    """Finding 6: twenty 50 MB chunked POSTs at once, each refused: the
    daemon's RSS comes back near where it was."""
    home.configure({"alpha": home.light_server("alpha")})
    _, port, key = start(home)
    daemon = psutil.Process(home.daemon_pid())
    before = daemon.memory_info().rss
    head = (
        f"POST /mcp/alpha HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
    answers: list[bytes] = []

    def one() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(head)
            with contextlib.suppress(OSError):
                for _ in range(50):
                    sock.sendall(chunk)
            answers.append(read_until_closed(sock, 60)[:12])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Past max_frame (413), or past max_buffered while the others are held (503).
    assert len(answers) == 20 and set(answers) <= {b"HTTP/1.1 413", b"HTTP/1.1 503"}, answers
    seen: list[int] = []

    def back() -> bool:
        seen.append(daemon.memory_info().rss >> 20)
        return (seen[-1] << 20) - before < 40 * 2**20

    with contextlib.suppress(AssertionError):
        wait_for(back, 10)
    assert back(), f"the daemon's RSS stayed at {seen[-1]} MiB, from {before >> 20} MiB"


def test_two_origin_headers_and_a_foreign_host_on_metrics_are_refused(home: McpHome) -> None:
    """Finding 9: a request with two ``Origin`` headers gets 403 (a browser cannot
    send that; the last one no longer wins), and ``/metrics`` checks ``Host``."""
    home.configure({"alpha": home.light_server("alpha")})
    _, port, key = start(home)
    auth = f"Authorization: Bearer {key}\r\n"
    ours = f"Origin: http://127.0.0.1:{port}\r\n"
    body = json.dumps(INITIALIZE).encode()
    twice = (
        f"POST /mcp/alpha HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Origin: http://evil.example\r\n{ours}Content-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    foreign = (
        f"GET /metrics HTTP/1.1\r\nHost: evil.example:{port}\r\n{auth}Connection: close\r\n\r\n"
    ).encode()
    for raw in (twice, foreign):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(raw)
            answer = read_until_closed(sock, 10)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request(port, "GET", "/metrics", {"Authorization": f"Bearer {key}"}))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
