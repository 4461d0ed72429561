"""Races on one state dir (issue 6): concurrent CLI commands, readers during writes, kills.

Many `daemon start | stop | restart` processes at once must end with at most
one daemon and a descriptor that names it; a reader polling the descriptor
meanwhile must never see half a file; a daemon killed at any moment of its
own start must leave nothing that blocks the next start.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from bicameral.daemon._descriptor import Descriptor

from .conftest import Home, alive, daemon_pids, wait_for


def finish(procs: list[subprocess.Popen[str]], timeout: float = 60.0) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout, stderr))
    return out


def check_consistent(home: Home) -> int | None:
    """At most one daemon, and the descriptor names it (or there is neither)."""
    pids = daemon_pids(home.path)
    assert len(pids) <= 1, f"{len(pids)} daemons for one state dir: {pids}"
    status = home.cli("daemon", "status")
    if pids:
        assert status.code == 0, status
        assert status.json["status"] == "running"
        assert status.json["pid"] == pids[0], (status, pids)
        assert home.read_descriptor()["pid"] == pids[0]
        return pids[0]
    assert status.code == 3, status
    assert not home.descriptor.exists()
    return None


def test_concurrent_start_stop_restart_converge_on_at_most_one_daemon(home: Home) -> None:
    rng = random.Random(6)
    commands = ["start"] * 3 + ["stop"] * 2 + ["restart"] * 3
    rng.shuffle(commands)
    procs = [home.popen("daemon", command) for command in commands]
    results = finish(procs)
    for command, (code, stdout, stderr) in zip(commands, results, strict=True):
        assert "Traceback" not in stderr, (command, stderr)
        if code == 0:
            body = json.loads(stdout)
            assert body["status"] in (
                "started",
                "already-running",
                "stopped",
                "already-stopped",
            )
        else:
            # A restart or start whose daemon a concurrent stop took away
            # says so on one line.
            assert code == 1, (command, code, stdout, stderr)
            assert len(stderr.strip().splitlines()) == 1, (command, stderr)
    check_consistent(home)
    home.cli("daemon", "stop")
    check_consistent(home)


def test_the_descriptor_is_never_seen_half_written(home: Home) -> None:
    stop = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                raw = home.descriptor.read_bytes()
            except FileNotFoundError:
                continue
            try:
                Descriptor.from_dict(json.loads(raw))
            except Exception as exc:
                bad.append(f"{exc!r}: {raw[:80]!r}")
            else:
                seen.append(len(raw))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        finish([home.popen("daemon", c) for c in ("restart", "start", "restart")])
        home.cli("daemon", "stop")
    finally:
        stop.set()
        thread.join(10)
    assert not bad, bad[:5]
    assert seen, "the reader never saw a descriptor"


def spawn_start(home: Home) -> tuple[subprocess.Popen[str], int]:
    """Run `daemon start` and return it with the pid of the daemon it spawned."""
    proc = home.popen("daemon", "start")
    pid = wait_for(lambda: daemon_pids(home.path), timeout=20, what="the daemon to spawn")[0]
    return proc, pid


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.5])
def test_a_daemon_killed_during_its_start_leaves_nothing_that_blocks_the_next(
    home: Home, delay: float
) -> None:
    home.install_probe_plugin()
    home.configure("[probe]\nstart_delay = 0.6\n")  # a start that takes its time
    proc, pid = spawn_start(home)
    time.sleep(delay)  # a random moment of the start, not a wait for an event
    os.kill(pid, signal.SIGKILL)
    code, stdout, stderr = finish([proc], timeout=30)[0]
    assert "Traceback" not in stderr
    if code == 0:
        # It got ready before the kill: a plain stale descriptor now.
        assert json.loads(stdout)["pid"] == pid
    else:
        assert code == 1
        assert "exited during startup (killed by SIGKILL)" in stderr, stderr
    wait_for(lambda: not alive(pid), what="the killed daemon to be gone")
    t0 = time.monotonic()
    again = home.cli("daemon", "start")
    assert again.code == 0, again
    assert again.json["status"] == "started"
    assert time.monotonic() - t0 < 15
    home.stop()


@pytest.mark.parametrize("delay", [0.02, 0.15])
def test_a_foreground_serve_killed_during_its_start_leaves_nothing_that_blocks_the_next(
    home: Home, delay: float
) -> None:
    serve = subprocess.Popen(
        [*home.argv("daemon", "serve")],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    serve.kill()
    serve.wait(10)
    again = home.cli("daemon", "start")
    assert again.code == 0, again
    home.stop()
