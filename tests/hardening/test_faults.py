"""Faults (issue 6): processes killed under load, an unwritable state dir, a socket
file deleted or replaced, stale locks and garbage descriptors.

Each fault must end in a clear state (the CLI says what it found, in one line
or one JSON object) and never in a hang: every wait here has a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bicameral.protocol import BlockingClient

from .conftest import Home, alive, daemon_pids, fd_count, wait_for

# --- an MCP client speaking through the real bridge ----------------------------------


class Bridge:
    """``bicameral mcp`` as an MCP client runs it: raw JSON lines on its stdin/stdout."""

    def __init__(self, home: Home, server: str | None = None) -> None:
        argv = home.argv("mcp", *(["--server", server] if server else []))
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=home.env,
        )
        self._ids = itertools.count(1)
        self._buf = bytearray()
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.fileno()
        init = self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "hardening", "version": "1"},
            },
        )
        assert "result" in init, init
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: Any, timeout: float = 20.0) -> dict[str, Any]:
        rid = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                message = json.loads(bytes(self._buf[:end]))
                del self._buf[: end + 1]
                if isinstance(message, dict) and message.get("id") == rid:
                    return message
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{method} {rid}: no answer within {timeout} s")
            readable, _, _ = select.select([self._out], [], [], remaining)
            if readable:
                chunk = os.read(self._out, 65536)
                if not chunk:
                    raise ConnectionError(f"{method} {rid}: the bridge closed stdout")
                self._buf.extend(chunk)

    def echo(self, tool: str, text: str) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": {"text": text}})

    def close(self) -> int:
        for stream in (self.proc.stdin,):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            code = self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return code


def at_eof(fd: int) -> bool:
    """Drain what ``fd`` has without blocking; True once it reads end of file."""
    while select.select([fd], [], [], 0)[0]:
        if not os.read(fd, 65536):
            return True
    return False


def echoed(reply: dict[str, Any], text: str) -> bool:
    result = reply.get("result")
    return (
        isinstance(result, dict)
        and not result.get("isError")
        and result["content"][0].get("text") == text
    )


def failure_names_server(reply: dict[str, Any], server: str) -> bool:
    """An error answer (JSON-RPC error or tool error) that names the server."""
    if "error" in reply:
        return server in str(reply["error"].get("message"))
    result = reply.get("result") or {}
    return bool(result.get("isError")) and server in json.dumps(result)


class Load:
    """Threads calling ``<server>__echo`` through bridges until stopped; every outcome counted."""

    def __init__(self, bridges: list[Bridge], tool: str) -> None:
        self.bridges = bridges
        self.tool = tool
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[dict[str, Any]] = []
        self.lost: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(i, b), daemon=True)
            for i, b in enumerate(bridges)
        ]

    def _run(self, n: int, bridge: Bridge) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            text = f"{n}-{i}"
            try:
                reply = bridge.echo(self.tool, text)
            except (OSError, ValueError) as exc:
                self.lost.append(f"{n}-{i}: {exc!r}")
                return
            if echoed(reply, text):
                self.ok += 1
            else:
                self.failed.append(reply)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"


@pytest.fixture
def mcp_daemon(home: Home) -> Iterator[Home]:
    home.configure(home.test_servers("a", "b"))
    home.start()
    yield home


# --- kills under load ---------------------------------------------------------------------


def test_sigkill_of_the_daemon_under_load_fails_every_client_fast_and_start_recovers(
    mcp_daemon: Home,
) -> None:
    home = mcp_daemon
    pid = home.read_descriptor()["pid"]
    upstreams = wait_for(lambda: len(home.upstream_pids()) == 2 and home.upstream_pids())
    outcomes: list[str] = []

    def rpc_client() -> None:
        try:
            with BlockingClient.connect_unix(str(home.socket), timeout=10) as client:
                while True:
                    client.call("system.health", timeout=10)
        except (OSError, ValueError) as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=rpc_client, daemon=True) for _ in range(3)]
    bridge = Bridge(home, "a")
    for thread in threads:
        thread.start()
    with Load([bridge], "echo") as load:
        wait_for(lambda: load.ok >= 5, what="MCP calls to flow")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(outcomes) == 3, what="every RPC client to see the daemon go")
        wait_for(lambda: load.lost or load.failed, what="the MCP client to see the daemon go")
    assert set(outcomes) <= {"ConnectionError", "ConnectionResetError", "BrokenPipeError"}
    # The bridge says why on stderr and exits non-zero, at once.
    assert bridge.close() != 0
    # The upstreams die with the daemon (parent-death signal).
    wait_for(lambda: not any(alive(p) for p in upstreams), what="the upstreams to die")
    status = home.cli("daemon", "status")
    assert (status.code, status.json["status"]) == (1, "stale"), status
    again = home.cli("daemon", "start")
    assert again.code == 0 and again.json["status"] == "started", again
    home.stop()


def test_sigkill_of_an_upstream_under_load_fails_only_calls_in_flight_then_recovers(
    mcp_daemon: Home,
) -> None:
    home = mcp_daemon
    daemon = home.read_descriptor()["pid"]
    bridges = [Bridge(home) for _ in range(3)]
    try:
        first = bridges[0].echo("a__echo", "warm")
        assert echoed(first, "warm"), first
        victim = bridges[0].request("tools/call", {"name": "a__pid", "arguments": {}})
        victim_pid = int(victim["result"]["content"][0]["text"])
        with Load(bridges, "a__echo") as load:
            wait_for(lambda: load.ok >= 20, what="calls to flow")
            os.kill(victim_pid, signal.SIGKILL)
            before = load.ok
            wait_for(lambda: load.ok >= before + 30, timeout=30, what="calls to flow again")
        assert not load.lost, load.lost
        # At most the calls in flight at the kill failed, each naming the server.
        assert len(load.failed) <= len(bridges), load.failed
        assert all(failure_names_server(r, "a") for r in load.failed), load.failed
        # The other server never noticed, and neither did the daemon.
        assert echoed(bridges[1].echo("b__echo", "still"), "still")
        assert home.read_descriptor()["pid"] == daemon
    finally:
        for bridge in bridges:
            assert bridge.close() == 0
    home.stop()


def test_sigkill_of_a_bridge_under_load_frees_its_session_and_spares_the_others(
    mcp_daemon: Home,
) -> None:
    home = mcp_daemon
    pid = home.read_descriptor()["pid"]
    warm = Bridge(home, "a")  # both upstreams up, the daemon's own fds settled
    assert echoed(warm.echo("echo", "x"), "x")
    assert warm.close() == 0
    baseline = fd_count(pid)
    bridges = [Bridge(home, "a") for _ in range(3)]
    victim = bridges[0]
    with Load(bridges[1:], "echo") as load:
        wait_for(lambda: load.ok >= 10, what="calls to flow")
        # Kill the victim mid-call.
        victim.send(
            {
                "jsonrpc": "2.0",
                "id": 99,
                "method": "tools/call",
                "params": {"name": "slow", "arguments": {"steps": 5, "delay": 0.2}},
            }
        )
        victim.proc.kill()
        victim.proc.wait(10)
        # Its client's end sees EOF: nobody (the daemon included) holds its stdout.
        wait_for(lambda: at_eof(victim._out), what="EOF on the killed bridge's pipe")
        before = load.ok
        wait_for(lambda: load.ok >= before + 20, what="the other sessions to go on")
    assert not load.lost and not load.failed, (load.lost, load.failed[:3])
    for bridge in bridges[1:]:
        assert bridge.close() == 0
    victim.close()
    wait_for(lambda: fd_count(pid) <= baseline, what="the daemon to close every session's fds")
    home.stop()


# --- the state dir made unwritable ----------------------------------------------------------


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.fixture
def immutable() -> Iterator[Any]:
    """``chattr +i`` a directory (root ignores mode bits; immutability it does not)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    made: list[Path] = []

    def make(path: Path) -> None:
        try:
            chattr("+i", path)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make {path} immutable here: {exc.stderr!r}")
        made.append(path)

    yield make
    for path in made:
        chattr("-i", path)


def test_an_unwritable_state_dir_fails_start_with_a_one_line_reason(
    home: Home, immutable: Any
) -> None:
    immutable(home.path)
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert f"state directory {home.path} is not writable" in run.stderr, run
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_an_unwritable_state_dir_with_old_files_fails_start_and_leaves_nothing(
    home: Home, immutable: Any
) -> None:
    home.start()
    home.stop()  # leaves daemon.lock and daemon.log, as every run does
    immutable(home.path)
    t0 = time.monotonic()
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert f"state directory {home.path} is not writable" in run.stderr, run
    assert "Traceback" not in run.stderr
    assert time.monotonic() - t0 < 15
    assert not daemon_pids(home.path)


def test_a_state_dir_made_unwritable_under_a_running_daemon(home: Home, immutable: Any) -> None:
    pid = home.start()
    immutable(home.path)
    # Reading needs no writes: status and reload still work.
    assert home.cli("daemon", "status").json["status"] == "running"
    assert home.cli("daemon", "reload").code == 0
    stop = home.cli("daemon", "stop")
    assert "Traceback" not in stop.stderr, stop.stderr
    wait_for(lambda: not alive(pid), what="the daemon to stop")
    # It stopped, but could not remove its descriptor or socket: said in one line.
    assert stop.code in (0, 1), stop
    if stop.code == 1:
        assert len(stop.stderr.strip().splitlines()) == 1, stop.stderr
        assert "daemon.json" in stop.stderr, stop.stderr
    chattr("-i", home.path)
    assert home.cli("daemon", "status").json["status"] == "stale"
    again = home.cli("daemon", "start")
    assert again.code == 0, again
    home.stop()


# --- the socket file deleted or replaced -------------------------------------------------------


def test_a_deleted_socket_file_is_noticed_and_rebound(home: Home) -> None:
    pid = home.start()
    with BlockingClient.connect_unix(str(home.socket), timeout=10) as old:
        home.socket.unlink()
        # Existing connections are untouched; new clients can connect again soon.
        wait_for(home.socket.exists, timeout=5, what="the daemon to rebind")
        assert old.call("system.version")["protocol_version"] == "1"
        assert home.cli("daemon", "status").json["status"] == "running"
    assert "socket" in home.log.read_text()
    assert home.read_descriptor()["pid"] == pid
    home.stop()


def test_a_socket_file_replaced_by_another_socket_is_noticed_and_rebound(home: Home) -> None:
    home.start()
    home.socket.unlink()
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    impostor.bind(str(home.socket))  # bound, never listening: connections are refused
    try:
        wait_for(
            lambda: home.cli("daemon", "status").json["status"] == "running",
            timeout=5,
            what="the daemon to take its socket path back",
        )
    finally:
        impostor.close()
    home.stop()


def test_a_socket_path_replaced_by_a_regular_file_is_reported_and_stop_still_works(
    home: Home,
) -> None:
    home.start()
    home.socket.unlink()
    home.socket.write_text("not a socket")
    wait_for(lambda: "not a socket" in home.log.read_text(), timeout=5, what="the daemon to say so")
    status = home.cli("daemon", "status")
    assert status.code == 4 and status.json["status"] == "unresponsive", status
    assert home.cli("daemon", "stop").code == 0
    home.socket.unlink()


# --- stale locks and garbage descriptors --------------------------------------------------------


def test_a_stale_lock_file_with_garbage_in_it_does_not_block_start(home: Home) -> None:
    home.lock.write_bytes(b"\xff\xfe garbage, no pid\n" * 100)
    home.lock.chmod(0o600)
    run = home.cli("daemon", "start")
    assert run.code == 0 and run.json["status"] == "started", run
    home.stop()


def test_a_lock_held_by_a_stranger_fails_start_after_wait_naming_it(home: Home) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(home.lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        t0 = time.monotonic()
        run = home.cli("daemon", "start", "--wait", "1")
        assert run.code == 1, run
        assert time.monotonic() - t0 < 10
        assert str(holder.pid) in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    finally:
        holder.kill()
        holder.wait()
    again = home.cli("daemon", "start")
    assert again.code == 0, again
    home.stop()


def _fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _dangling(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere"))


GARBAGE: dict[str, Any] = {
    "empty": b"",
    "random bytes": bytes(range(256)) * 40,
    "invalid utf-8": b'{"pid": "\xff"}',
    "a JSON array": b"[1, 2, 3]",
    "wrong types": json.dumps({"descriptor_version": 1, "pid": "12", "socket_path": 5}).encode(),
    "pid 0": json.dumps(
        {
            "descriptor_version": 1,
            "pid": 0,
            "socket_path": "/x",
            "started_at": "x",
            "process_start_time": 0,
            "daemon_version": "0",
            "protocol_version": "1",
            "log_path": None,
        }
    ).encode(),
    "3 MiB of whitespace": b" " * (3 << 20),
    "deep nesting": b"[" * 100_000,
    "a FIFO": _fifo,
    "a symlink to /dev/zero": _dev_zero,
    "a dangling symlink": _dangling,
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_a_garbage_descriptor_reads_as_stale_and_start_replaces_it(home: Home, kind: str) -> None:
    make = GARBAGE[kind]
    if isinstance(make, bytes):
        home.descriptor.write_bytes(make)
    else:
        make(home.descriptor)
    status = home.cli("daemon", "status", timeout=5)
    assert status.code in (1, 3), status  # stale (or, for a dangling link, stopped)
    assert "Traceback" not in status.stderr
    started = home.cli("daemon", "start", timeout=15)
    assert started.code == 0 and started.json["status"] == "started", started
    assert home.read_descriptor()["pid"] == started.json["pid"]
    home.stop()


def test_a_directory_in_place_of_the_descriptor_is_a_one_line_error(home: Home) -> None:
    home.descriptor.mkdir()
    try:
        status = home.cli("daemon", "status", timeout=15)
        assert status.code == 1 and status.json["status"] == "stale", status
        for command in ("stop", "start"):
            run = home.cli("daemon", command, timeout=15)
            assert run.code == 1, run
            assert "Traceback" not in run.stderr, run.stderr
            assert str(home.descriptor) in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    finally:
        home.descriptor.rmdir()
    assert not daemon_pids(home.path)


def test_an_unwritable_state_dir_says_how_to_fix_it_everywhere(home: Home, immutable: Any) -> None:
    """`start`, the bridge and `doctor` name the fix: another state dir (--home or
    BICAMERAL_HOME); the bridge's MCP client learns it at initialize."""
    immutable(home.path)
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "--home" in run.stderr and "BICAMERAL_HOME" in run.stderr, run
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    bridge = subprocess.run(
        home.argv("mcp"),
        input=json.dumps(initialize) + "\n",
        capture_output=True,
        text=True,
        env=home.env,
        timeout=60,
        check=False,
    )
    assert bridge.returncode == 1, bridge
    assert "--home" in bridge.stderr and "BICAMERAL_HOME" in bridge.stderr, bridge
    answer = json.loads(bridge.stdout)
    assert answer["id"] == 1 and "BICAMERAL_HOME" in answer["error"]["message"], answer
    doctor = home.cli("doctor", "--json")
    assert doctor.code == 1, doctor
    state = next(c for c in doctor.json["checks"] if c["name"] == "state-dir")
    assert state["status"] == "problem", state
    assert "--home" in state["fix"] and "BICAMERAL_HOME" in state["fix"], state
