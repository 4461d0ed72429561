"""The daemon's life through the real CLI: start, status, stop, signals, failures.

Each test runs ``python -m bicameral ...`` as a subprocess against a real
daemon in its own short directory under /tmp, and ends with nothing left
behind (the ``home`` fixture checks: no daemon, descriptor, socket or held
lock). Nothing sleeps: the CLI returns when the daemon is ready or gone, and
the tests wait on process exits and pipes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bicameral.daemon import resolve_paths, start, stop
from bicameral.daemon._identity import process_start_time
from bicameral.platform import ProcessPin

from .conftest import Home, Run, alive


def _pin(pid: int) -> ProcessPin:
    """`pid` held for waiting (a pidfd on Linux, kqueue on macOS, a handle on Windows)."""
    pin = ProcessPin.open(pid)
    assert pin is not None, f"pid {pid} is gone"
    return pin


def wait_exit(pid: int, timeout: float = 10.0) -> int:
    """Wait for our child ``pid`` to exit (``waitpid`` in a thread) and return its exit code."""
    statuses: list[int] = []
    waiter = threading.Thread(target=lambda: statuses.append(os.waitpid(pid, 0)[1]), daemon=True)
    waiter.start()
    waiter.join(timeout)
    assert statuses, f"pid {pid} did not exit within {timeout} s"
    return os.waitstatus_to_exitcode(statuses[0])


def test_start_status_stop_round_trip(home: Home) -> None:
    started = home.cli("daemon", "start")
    assert started.code == 0, started
    info = started.json
    assert info["status"] == "started"
    assert info["socket_path"] == str(home.socket)
    assert info["descriptor_path"] == str(home.descriptor)
    assert alive(info["pid"])

    status = home.cli("daemon", "status")
    assert status.code == 0, status
    body = status.json
    assert body["status"] == "running"
    assert body["pid"] == info["pid"]
    assert body["daemon_version"]
    assert body["uptime_s"] >= 0
    assert [c["name"] for c in body["tree"]["children"]] == ["signals", "server", "adapters"]

    stopped = home.cli("daemon", "stop")
    assert stopped.code == 0, stopped
    assert stopped.json == {"status": "stopped", "pid": info["pid"]}
    assert not alive(info["pid"])
    assert not home.descriptor.exists()
    assert not home.socket.exists()

    after = home.cli("daemon", "status")
    assert after.code == 3
    assert after.json["status"] == "stopped"


def test_start_twice_reports_already_running_with_the_same_pid(home: Home) -> None:
    first = home.cli("daemon", "start").json
    assert first.pop("servers") == {}  # started says how its servers are; none here
    second = home.cli("daemon", "start")
    assert second.code == 0
    assert second.json == {**first, "status": "already-running"}
    assert home.cli("daemon", "stop").code == 0


def test_stop_when_nothing_runs_is_already_stopped(home: Home) -> None:
    for _ in range(2):
        run = home.cli("daemon", "stop")
        assert run.code == 0
        assert run.json == {"status": "already-stopped"}


def test_stop_when_the_state_dir_does_not_exist_is_already_stopped(home: Home) -> None:
    missing = home.path / "nope"
    run = home.cli("--home", str(missing), "daemon", "stop")
    assert run.code == 0
    assert run.json == {"status": "already-stopped"}
    assert not missing.exists()


def test_restart_reports_the_previous_pid(home: Home) -> None:
    first = home.cli("daemon", "start").json
    restarted = home.cli("daemon", "restart")
    assert restarted.code == 0, restarted
    body = restarted.json
    assert body["status"] == "started"
    assert body["previous_pid"] == first["pid"]
    assert body["pid"] != first["pid"]
    assert not alive(first["pid"])
    home.pids.add(body["pid"])
    assert home.cli("daemon", "stop").code == 0


def test_restart_when_stopped_has_a_null_previous_pid(home: Home) -> None:
    run = home.cli("daemon", "restart")
    assert run.code == 0, run
    assert run.json["previous_pid"] is None
    assert home.cli("daemon", "stop").code == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_exits_0_and_leaves_nothing(home: Home, signum: int) -> None:
    # Started in-process, so the daemon is our child and its exit code is ours to read.
    paths = resolve_paths(home.path)
    info = start(paths)
    pid = info["pid"]
    home.pids.add(pid)
    os.kill(pid, signum)
    assert wait_exit(pid) == 0
    assert not home.descriptor.exists()
    assert not home.socket.exists()


def test_a_second_sigterm_cancels_a_slow_graceful_stop_at_once(home: Home) -> None:
    home.install_test_plugin()
    home.write_config("[test.adapters.slow]\nstop_delay = 30.0\n")
    pid = start(resolve_paths(home.path), env=home.env)["pid"]
    home.pids.add(pid)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    # The slow adapter keeps the graceful stop going for 30 s; the daemon must
    # still be there to hear the second signal.
    with _pin(pid) as handle:
        assert not handle.wait(0.3)
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid) == 0
    assert time.monotonic() - t0 < 5.0
    assert not home.descriptor.exists()
    assert not home.socket.exists()


def test_sigkill_leaves_a_stale_descriptor_that_status_reports_and_start_recovers(
    home: Home,
) -> None:
    first = home.cli("daemon", "start").json
    os.kill(first["pid"], signal.SIGKILL)
    with _pin(first["pid"]) as handle:
        assert handle.wait(5.0)

    status = home.cli("daemon", "status")
    assert status.code == 1, status
    assert status.json["status"] == "stale"
    assert status.json["pid"] == first["pid"]

    again = home.cli("daemon", "start")
    assert again.code == 0, again
    assert again.json["status"] == "started"
    assert again.json["pid"] != first["pid"]
    assert home.cli("daemon", "status").code == 0
    assert home.cli("daemon", "stop").json["status"] == "stopped"


def test_stop_of_a_stale_descriptor_cleans_it(home: Home) -> None:
    first = home.cli("daemon", "start").json
    os.kill(first["pid"], signal.SIGKILL)
    with _pin(first["pid"]) as handle:
        assert handle.wait(5.0)
    run = home.cli("daemon", "stop")
    assert run.code == 0
    body = run.json
    assert body.pop("reason").startswith(f"pid {first['pid']} ")
    assert body == {"status": "stopped", "stale": True, "pid": first["pid"]}
    assert not home.descriptor.exists()
    assert not home.socket.exists()


def test_a_descriptor_naming_a_live_unrelated_process_is_stale_and_never_signalled(
    home: Home,
) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        descriptor = {
            "descriptor_version": 1,
            "pid": bystander.pid,
            "socket_path": str(home.socket),
            "started_at": "2026-01-01T00:00:00Z",
            "process_start_time": process_start_time(bystander.pid) - 1000.0,
            "daemon_version": "0.1.0",
            "protocol_version": "1",
            "log_path": None,
        }
        home.descriptor.write_text(json.dumps(descriptor))
        status = home.cli("daemon", "status")
        assert status.code == 1
        assert status.json["status"] == "stale"
        stopped = home.cli("daemon", "stop", "--timeout", "0.2")
        body = stopped.json
        assert body.pop("reason") == (
            f"pid {bystander.pid} is now another process (the pid was reused)"
        )
        assert body == {"status": "stopped", "stale": True, "pid": bystander.pid}
        assert bystander.poll() is None, "the bystander was signalled"
        assert not home.descriptor.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_clock_step_after_start_does_not_orphan_the_daemon(home: Home) -> None:
    """The start time is read against the wall clock, which NTP may step after
    the daemon started; the kernel's word that the daemon's pid listens on its
    socket still identifies it, so status finds it and stop stops it."""
    started = home.cli("daemon", "start")
    assert started.code == 0, started
    pid = started.json["pid"]
    descriptor = json.loads(home.descriptor.read_text())
    descriptor["process_start_time"] += 1000.0  # as read after a 1000 s step back
    home.descriptor.write_text(json.dumps(descriptor))
    status = home.cli("daemon", "status")
    assert status.code == 0 and status.json["pid"] == pid, status
    stopped = home.cli("daemon", "stop")
    assert stopped.json == {"status": "stopped", "pid": pid}, stopped
    assert not alive(pid)


def test_a_reused_pid_is_not_vouched_for_by_another_daemons_socket(home: Home) -> None:
    """The socket proof names the listener's pid: a bystander with the wrong
    start time stays stale even while a real daemon listens on that socket."""
    started = home.cli("daemon", "start")
    assert started.code == 0, started
    real = json.loads(home.descriptor.read_text())
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake = dict(real, pid=bystander.pid)
        fake["process_start_time"] = process_start_time(bystander.pid) - 1000.0
        home.descriptor.write_text(json.dumps(fake))
        status = home.cli("daemon", "status")
        assert status.code == 1 and status.json["status"] == "stale", status
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        home.descriptor.write_text(json.dumps(real))
    assert home.cli("daemon", "stop").code == 0


def test_a_malformed_descriptor_reads_as_stale(home: Home) -> None:
    home.descriptor.write_text("{not json")
    status = home.cli("daemon", "status")
    assert status.code == 1
    assert status.json["status"] == "stale"
    stopped = home.cli("daemon", "stop")
    assert stopped.json == {"status": "stopped", "stale": True, "pid": None}
    assert not home.descriptor.exists()
    started = home.cli("daemon", "start")
    assert started.code == 0, started
    assert home.cli("daemon", "stop").code == 0


def test_concurrent_starts_converge_on_one_daemon(home: Home) -> None:
    procs = [home.popen("daemon", "start") for _ in range(4)]
    outputs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    results = [Run(subprocess.CompletedProcess([], 0, out, err)).json for out, err in outputs]
    pids = {r["pid"] for r in results}
    home.pids.update(pids)
    assert len(pids) == 1, results
    assert sorted(r["status"] for r in results) == [
        "already-running",
        "already-running",
        "already-running",
        "started",
    ]
    assert home.cli("daemon", "stop").code == 0


def test_stop_from_the_spawning_process_returns_promptly(home: Home) -> None:
    # The predecessor waited out its 10 s grace here: its daemon was our
    # zombie, and os.kill(pid, 0) succeeds on zombies.
    paths = resolve_paths(home.path)
    pid = start(paths)["pid"]
    home.pids.add(pid)
    t0 = time.monotonic()
    result = stop(paths)
    elapsed = time.monotonic() - t0
    assert result == {"status": "stopped", "pid": pid}
    assert elapsed < 3.0  # not the predecessor's 10 s (generous: shared CI machines)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped by stop()


def test_a_killed_unreaped_daemon_is_a_stale_zombie(home: Home) -> None:
    paths = resolve_paths(home.path)
    pid = start(paths)["pid"]
    home.pids.add(pid)
    os.kill(pid, signal.SIGKILL)
    with _pin(pid) as handle:
        assert handle.wait(5.0)  # exited, and a zombie until reaped
    status = home.cli("daemon", "status")
    assert status.json["status"] == "stale"
    t0 = time.monotonic()
    result = stop(paths)
    assert time.monotonic() - t0 < 3.0  # no wait on a zombie
    assert result.pop("reason").startswith(f"pid {pid} ")
    assert result == {"status": "stopped", "stale": True, "pid": pid}


def test_files_and_directory_are_private(home: Home) -> None:
    fresh = home.path / "fresh"
    info = home.cli("--home", str(fresh), "daemon", "start").json
    home.pids.add(info["pid"])
    try:
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
        for name in ("daemon.json", "daemon.sock", "daemon.lock", "daemon.log"):
            assert stat.S_IMODE((fresh / name).stat().st_mode) == 0o600, name
    finally:
        assert home.cli("--home", str(fresh), "daemon", "stop").code == 0
    assert not (fresh / "daemon.json").exists()
    assert (fresh / "daemon.lock").exists()  # never deleted, by design


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_a_state_dir_writable_by_others_is_refused_and_left_untouched(
    home: Home, mode: int
) -> None:
    os.chmod(home.path, mode)
    run = home.cli("daemon", "start")
    assert run.code == 1
    assert "writable by group or others" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr
    assert list(home.path.iterdir()) == []
    status = home.cli("daemon", "status")
    assert status.code == 4
    assert "writable" in status.stderr
    os.chmod(home.path, 0o700)


def test_a_state_dir_that_is_a_file_is_refused(home: Home) -> None:
    target = home.path / "file"
    target.write_text("")
    run = home.cli("--home", str(target), "daemon", "start")
    assert run.code == 1
    assert "not a directory" in run.stderr
    assert "Traceback" not in run.stderr
    assert [p.name for p in home.path.iterdir()] == ["file"]


def test_an_invalid_config_fails_start_with_the_reason_and_leaves_nothing(home: Home) -> None:
    home.write_config("this is = = not toml\n")
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "not valid TOML" in run.stderr
    assert str(home.path / "daemon.log") in run.stderr
    assert "Traceback" not in run.stderr
    # No descriptor, socket or held lock: the home fixture checks them too.
    assert not home.descriptor.exists()
    assert home.cli("daemon", "status").code == 3


def test_a_config_that_is_a_fifo_fails_start_at_once_with_the_reason(home: Home) -> None:
    os.mkfifo(home.path / "config.toml", 0o600)
    run = home.cli("daemon", "start", "--wait", "20")
    assert run.code == 1, run
    assert "config.toml: not a regular file" in run.stderr, run.stderr
    assert "did not become ready" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not home.descriptor.exists()


def test_a_plugin_config_error_fails_start_before_readiness(home: Home) -> None:
    home.install_test_plugin()
    home.write_config("[test]\ninvalid = true\n")
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "invalid on purpose" in run.stderr
    assert not home.descriptor.exists()


def test_a_too_long_socket_path_falls_back_to_a_short_one(home: Home) -> None:
    deep = home.path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    (home.path / ("d" * 60)).chmod(0o700)
    info = home.cli("--home", str(deep), "daemon", "start")
    assert info.code == 0, info
    socket_path = info.json["socket_path"]
    home.pids.add(info.json["pid"])
    assert len(os.fsencode(socket_path)) <= 107
    assert not socket_path.startswith(str(deep))
    assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)
    assert home.cli("--home", str(deep), "daemon", "status").json["status"] == "running"
    assert home.cli("--home", str(deep), "daemon", "stop").code == 0
    assert not os.path.exists(socket_path)


def test_tcp_transport_requires_the_token(home: Home) -> None:
    from bicameral.protocol import UNAUTHORIZED, BlockingClient, RPCError

    info = home.cli("daemon", "start", "--transport", "tcp")
    assert info.code == 0, info
    body = info.json
    assert body["socket_path"] is None
    descriptor = home.read_descriptor()
    assert descriptor["transport"] == "tcp"
    assert descriptor["socket_path"] is None
    assert descriptor["address"].startswith("127.0.0.1:")
    assert len(descriptor["token"]) == 64
    host, _, port = descriptor["address"].rpartition(":")
    import socket as socket_mod

    raw = socket_mod.create_connection((host, int(port)), timeout=5)
    with BlockingClient(raw) as client:
        with pytest.raises(RPCError) as refused:
            client.call("system.version")
        assert refused.value.code == UNAUTHORIZED
    with BlockingClient.connect_tcp(descriptor["address"], descriptor["token"]) as client:
        assert client.call("system.version")["protocol_version"] == "1"
    assert home.cli("daemon", "status").json["status"] == "running"
    restarted = home.cli("daemon", "restart").json  # keeps the transport
    assert restarted["transport"] == "tcp" and restarted["socket_path"] is None
    assert home.read_descriptor()["token"] != descriptor["token"]
    assert home.cli("daemon", "stop").json["status"] == "stopped"


def test_start_against_an_unresponsive_daemon_fails_suggesting_stop(home: Home) -> None:
    info = home.cli("daemon", "start").json
    os.kill(info["pid"], signal.SIGSTOP)
    try:
        run = home.cli("daemon", "start", "--wait", "0.3")
        assert run.code == 1
        assert "not answering" in run.stderr
        assert "daemon stop" in run.stderr
        status = home.cli("daemon", "status", "--timeout", "0.3")  # (default: 2 s)
        assert status.code == 4
        assert status.json["status"] == "unresponsive"
        assert status.json["pid"] == info["pid"]
    finally:
        stopped = home.cli("daemon", "stop", "--timeout", "0.3")
    # A stopped process ignores SIGTERM until continued: stop falls back to SIGKILL.
    assert stopped.json == {"status": "stopped", "pid": info["pid"], "killed": True}
    assert not home.socket.exists()


def test_system_shutdown_rpc_answers_then_stops(home: Home) -> None:
    from bicameral.protocol import BlockingClient

    paths = resolve_paths(home.path)
    pid = start(paths)["pid"]
    home.pids.add(pid)
    with BlockingClient.connect_unix(str(home.socket)) as client:
        assert client.call("system.shutdown") == {"status": "stopping"}
    assert wait_exit(pid) == 0
    assert not home.descriptor.exists()


def test_python_m_bicameral_daemon_serve_runs_in_the_foreground(home: Home) -> None:
    sock = home.path / "fg.sock"
    desc = home.path / "fg.json"
    read_end, write_end = os.pipe()
    env = dict(home.env, BICAMERAL_READY_FD=str(write_end))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bicameral.daemon",
            "serve",
            "--home",
            str(home.path),
            "--socket",
            str(sock),
            "--descriptor",
            str(desc),
        ],
        env=env,
        pass_fds=(write_end,),
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    home.pids.add(proc.pid)
    try:
        with os.fdopen(read_end, "rb") as ready:
            assert ready.readline() == b"READY\n"
        status = home.cli("daemon", "status", "--descriptor", str(desc))
        assert status.json["status"] == "running"
        assert status.json["socket_path"] == str(sock)
        assert (home.path / "fg.json.lock").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "ready on" in err  # logs go to stderr in the foreground
    assert not sock.exists()
    assert not desc.exists()


def test_a_second_foreground_serve_is_refused_while_one_runs(home: Home) -> None:
    info = home.cli("daemon", "start").json
    run = subprocess.run(
        home.argv("daemon", "serve"),
        capture_output=True,
        text=True,
        env=home.env,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1
    assert f"pid {info['pid']}" in run.stderr
    assert home.cli("daemon", "status").json["pid"] == info["pid"]
    assert home.cli("daemon", "stop").code == 0


def test_reload_applies_the_config_difference(home: Home) -> None:
    from bicameral.protocol import BlockingClient

    home.install_test_plugin()
    home.write_config("[test.adapters.a]\n[test.adapters.b]\n[test.adapters.keep]\n")
    assert home.cli("daemon", "start").code == 0
    with BlockingClient.connect_unix(str(home.socket)) as client:
        before = {a["name"]: a for a in client.call("adapters.list")}
    home.write_config(
        "[test.adapters.keep]\n[test.adapters.b]\nstop_delay = 0.01\n[test.adapters.c]\n"
    )
    with BlockingClient.connect_unix(str(home.socket)) as client:
        result = client.call("system.reload")
        assert result.pop("servers") == {"running": 3}  # what is running after it
        assert result == {"added": ["c"], "removed": ["a"], "restarted": ["b"]}
        order = [a["name"] for a in client.call("adapters.list")]
        assert order == ["b", "keep", "c"]  # the changed one kept its place; the new one last
        listed = {a["name"]: a for a in client.call("adapters.list")}
        assert all(a["state"] == "running" for a in listed.values())
        assert listed["keep"]["started_at"] == before["keep"]["started_at"]  # untouched
        assert listed["b"]["started_at"] > before["b"]["started_at"]
        restarted = client.call("adapters.restart", {"name": "c"})
        assert restarted["restarts"] == 1
        home.write_config("[test]\ninvalid = true\n")
        from bicameral.protocol import RPCError

        with pytest.raises(RPCError, match="invalid on purpose"):
            client.call("system.reload")
        assert len(client.call("adapters.list")) == 3  # the running tree was kept
    assert home.cli("daemon", "stop").code == 0


def test_sighup_reloads_and_systemd_hears_every_step(home: Home) -> None:
    import socket as socket_mod

    from bicameral.protocol import BlockingClient

    home.install_test_plugin()
    notify = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    notify.bind(str(home.path / "notify.sock"))
    notify.settimeout(10)
    home.env["NOTIFY_SOCKET"] = str(home.path / "notify.sock")
    try:
        assert home.cli("daemon", "start").code == 0
        assert notify.recv(4096).startswith(b"READY=1")
        pid = home.read_descriptor()["pid"]
        home.write_config("[test.adapters.late]\n")
        os.kill(pid, signal.SIGHUP)
        assert notify.recv(4096).startswith(b"RELOADING=1")
        assert notify.recv(4096) == b"READY=1"
        with BlockingClient.connect_unix(str(home.socket)) as client:
            listed = client.call("adapters.list")
            assert [(a["name"], a["state"]) for a in listed] == [("late", "running")]
            assert client.call("system.health")["status"] == "ok"
        assert home.cli("daemon", "stop").code == 0
        assert notify.recv(4096) == b"STOPPING=1"
    finally:
        notify.close()


def test_attach_modes_dispatch_to_plugins(home: Home) -> None:
    from bicameral.protocol import BlockingClient, RPCError

    home.install_test_plugin()
    assert home.cli("daemon", "start").code == 0
    with BlockingClient.connect_unix(str(home.socket)) as client:
        rpc = client.call("system.attach", {"tenant_id": "t1", "client": "pytest"})
        assert rpc["mode"] == "rpc" and rpc["tenant_id"] == "t1" and rpc["session_id"]
        with pytest.raises(RPCError) as unknown:
            client.call("system.attach", {"mode": "nope"})
        assert unknown.value.code == -32602
        echo = client.call("system.attach", {"mode": "echo"})
        assert echo["mode"] == "echo" and echo["echo"] is True
        raw = client._sock
        raw.sendall(b"hello raw bytes")
        got = b""
        while len(got) < len(b"hello raw bytes"):
            got += raw.recv(100)
        assert got == b"hello raw bytes"
    assert home.cli("daemon", "stop").code == 0


def test_log_goes_to_daemon_log_when_detached(home: Home) -> None:
    info = home.cli("daemon", "start").json
    assert home.cli("daemon", "stop").code == 0
    log = (home.path / "daemon.log").read_text()
    assert f"daemon pid {info['pid']} ready on" in log
    assert "stopped (SIGTERM)" in log


def test_human_output_on_a_terminal_shows_the_tree(home: Home) -> None:
    import pty

    assert home.cli("daemon", "start").code == 0
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvpe(sys.executable, home.argv("daemon", "status"), home.env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, wstatus = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wstatus) == 0
    text = out.decode()
    assert "bicameral daemon running" in text
    assert "adapters [supervisor] running" in text
    assert home.cli("daemon", "stop").code == 0


def test_user_errors_are_one_line_without_traceback(home: Home) -> None:
    bad = home.cli("daemon", "start", "--wait", "soon")
    assert bad.code == 2
    assert "Traceback" not in bad.stderr
    missing = home.cli("daemon", "start", "--config", str(home.path / "missing.toml"))
    assert missing.code == 1
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_crash_of_the_tree_exits_non_zero_and_cleans_up(home: Home) -> None:
    from bicameral.protocol import BlockingClient

    home.install_test_plugin()
    home.write_config("[test.adapters.a]\n[test.adapters.b]\n")
    pid = start(resolve_paths(home.path), env=home.env)["pid"]
    home.pids.add(pid)
    with BlockingClient.connect_unix(str(home.socket)) as client:
        assert client.call("test.crash") == "crashing"
    # Adapters crash on every start: the subtree gives up, the root restarts
    # it until the root's own intensity is exceeded, and the daemon exits.
    assert wait_exit(pid) == 1
    assert not home.descriptor.exists()
    assert not home.socket.exists()
    assert "RestartIntensityExceeded" in (home.path / "daemon.log").read_text()


def raw_exchange(sock_path: Path, payload: bytes, expect: int) -> list[object]:
    """Send ``payload`` on a fresh connection, read ``expect`` response lines."""
    import socket as socket_mod

    with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        sock.sendall(payload)
        buf = b""
        while buf.count(b"\n") < expect:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {buf!r}"
            buf += chunk
        return [json.loads(line) for line in buf.splitlines() if line.strip()]


def test_protocol_errors_end_to_end(home: Home) -> None:
    assert home.cli("daemon", "start").code == 0
    replies = raw_exchange(
        home.socket,
        b"this is not json\n"
        b'{"jsonrpc": "2.0", "id": 1}\n'
        b'{"jsonrpc": "2.0", "id": 2, "method": "no.such.method"}\n'
        b'{"jsonrpc": "2.0", "method": "system.version"}\n'  # a notification: no reply
        b"\r\n\n"  # blank lines are ignored
        b'[{"jsonrpc": "2.0", "id": 3, "method": "system.version"}, 5]\r\n'
        b'{"jsonrpc": "2.0", "id": 4, "method": "adapters.restart", "params": {}}\n'
        b'{"jsonrpc": "2.0", "id": 5, "method": "system.version"}\n',
        expect=6,
    )
    by_id: dict[object, object] = {}
    for reply in replies:
        if isinstance(reply, list):
            results = [r for r in reply if "result" in r]
            errors = [r for r in reply if "error" in r]
            assert [r["id"] for r in results] == [3]
            assert [(e["id"], e["error"]["code"]) for e in errors] == [(None, -32600)]
            by_id["batch"] = reply
        else:
            assert isinstance(reply, dict)
            by_id[reply["id"]] = reply
    assert by_id[None]["error"]["code"] == -32700  # type: ignore[index]
    assert by_id[1]["error"]["code"] == -32600  # type: ignore[index]
    assert by_id[2]["error"]["code"] == -32601  # type: ignore[index]
    assert by_id[4]["error"]["code"] == -32602  # type: ignore[index]
    assert by_id[5]["result"]["protocol_version"] == "1"  # type: ignore[index]
    assert "batch" in by_id
    assert len(replies) == 6  # the notification got nothing
    # The daemon is unharmed.
    assert home.cli("daemon", "status").json["status"] == "running"
    assert home.cli("daemon", "stop").code == 0


def test_pipelined_requests_all_get_their_answers(home: Home) -> None:
    assert home.cli("daemon", "start").code == 0
    n = 200
    payload = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "system.version"}).encode() + b"\n"
        for i in range(n)
    )
    replies = raw_exchange(home.socket, payload, expect=n)
    assert sorted(r["id"] for r in replies) == list(range(n))  # type: ignore[index]
    assert all("result" in r for r in replies)  # type: ignore[operator]
    assert home.cli("daemon", "stop").code == 0


def test_an_oversized_frame_gets_an_error_and_only_that_connection_closes(home: Home) -> None:
    import socket as socket_mod

    assert home.cli("daemon", "start").code == 0
    with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(home.socket))
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(17):  # 17 MiB without a newline, over the 16 MiB limit
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close before we finish: it answered already
        buf = b""
        while b"\n" not in buf:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
        reply = json.loads(buf.split(b"\n")[0])
        assert reply["error"]["code"] == -32600
        assert reply["id"] is None
    assert home.cli("daemon", "status").json["status"] == "running"
    assert home.cli("daemon", "stop").code == 0


def test_a_daemon_that_dies_silently_during_startup_is_reported(home: Home) -> None:
    from bicameral.daemon import StartError

    with pytest.raises(StartError, match=r"exited during startup \(exit status 1\)") as info:
        start(resolve_paths(home.path), python="/bin/false")
    assert info.value.log_path == str(home.path / "daemon.log")


def test_a_daemon_that_never_gets_ready_is_killed_after_wait(home: Home) -> None:
    from bicameral.daemon import StartError

    never = home.path / "never-ready"
    never.write_text("#!/bin/sh\nexec sleep 60\n")
    never.chmod(0o700)
    t0 = time.monotonic()
    with pytest.raises(StartError, match="did not become ready"):
        start(resolve_paths(home.path), wait=0.3, python=str(never))
    assert time.monotonic() - t0 < 5.0  # killed after its wait, not after the 60 s sleep
    # The fixture checks that no lock is held; and no `sleep` is left either:
    # start() killed and reaped its child.


def test_an_adapter_that_fails_to_start_fails_the_start_naming_it(home: Home) -> None:
    home.install_test_plugin()
    home.write_config("[test.adapters.ok]\n[test.adapters.bad]\nbroken = true\n")
    run = home.cli("daemon", "start")
    assert run.code == 1, run
    assert "bicameral/adapters/bad failed to start: RuntimeError('broken adapter')" in run.stderr
    assert not home.descriptor.exists()


def test_reload_command_reports_changes_and_refuses_a_bad_config(home: Home) -> None:
    assert home.cli("daemon", "reload").code == 3  # nothing runs: nothing to reload
    home.install_test_plugin()
    home.write_config("[test.adapters.a]\n")
    assert home.cli("daemon", "start").code == 0
    home.write_config("[test.adapters.a]\n[test.adapters.b]\n")
    run = home.cli("daemon", "reload")
    assert run.code == 0
    assert run.json["status"] == "reloaded"
    assert run.json["added"] == ["b"] and run.json["removed"] == []
    home.write_config("[test]\ninvalid = true\n")
    bad = home.cli("daemon", "reload")
    assert bad.code == 1
    assert "invalid on purpose" in bad.stderr and "Traceback" not in bad.stderr
    tree = home.cli("daemon", "status").json["tree"]
    (adapters,) = [c for c in tree["children"] if c["name"] == "adapters"]
    assert [c["name"] for c in adapters["children"]] == ["a", "b"]  # the tree was kept
    assert home.cli("daemon", "stop").code == 0


def test_foreground_serve_logs_json_lines_with_log_format_json(home: Home) -> None:
    read_end, write_end = os.pipe()
    env = dict(home.env, BICAMERAL_READY_FD=str(write_end))
    proc = subprocess.Popen(
        home.argv("daemon", "serve", "--log-format", "json"),
        env=env,
        pass_fds=(write_end,),
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    home.pids.add(proc.pid)
    try:
        with os.fdopen(read_end, "rb") as ready:
            assert ready.readline() == b"READY\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    entries = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert entries, err
    assert {"ts", "level", "logger", "pid", "message"} <= set(entries[0])
    assert all(e["pid"] == proc.pid for e in entries)
    assert any("ready on" in e["message"] for e in entries)


def test_an_unknown_log_format_fails_start_with_the_reason(home: Home) -> None:
    home.env["BICAMERAL_LOG_FORMAT"] = "xml"
    run = home.cli("daemon", "start")
    assert run.code == 1
    assert "log format must be one of text, json, not 'xml'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not home.descriptor.exists()


def test_systemd_watchdog_pings_at_half_the_interval_with_a_status_line(home: Home) -> None:
    import socket as socket_mod

    home.install_test_plugin()
    home.write_config("[test.adapters.a]\n")
    notify = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    notify.bind(str(home.path / "notify.sock"))
    notify.settimeout(10)
    home.env["NOTIFY_SOCKET"] = str(home.path / "notify.sock")
    home.env["WATCHDOG_USEC"] = "200000"  # ping every 0.1 s
    try:
        assert home.cli("daemon", "start").code == 0
        got: list[bytes] = []
        while got.count(b"WATCHDOG=1") < 3:
            got.append(notify.recv(4096))
        assert got[0].startswith(b"READY=1")
        assert b"STATUS=ready; adapters: 1 running" in got
        assert home.cli("daemon", "stop").code == 0
    finally:
        notify.close()


def test_a_flood_of_idle_tcp_strangers_never_locks_the_owner_out(home: Home) -> None:
    """1,024 connections that never show the token, held open: the owner's
    status and RPCs go on (SPEC §7): strangers are capped apart, the oldest
    dropped first."""
    import socket as socket_mod

    from bicameral.protocol import BlockingClient

    assert home.cli("daemon", "start", "--transport", "tcp").code == 0
    descriptor = home.read_descriptor()
    host, _, port = descriptor["address"].rpartition(":")
    strangers = []
    try:
        for _ in range(1024):
            try:
                strangers.append(socket_mod.create_connection((host, int(port)), timeout=5))
            except OSError:
                break  # the backlog is full: the flood is as big as it gets
        status = home.cli("daemon", "status")
        assert status.code == 0, status
        assert status.json["status"] == "running"
        with BlockingClient.connect_tcp(descriptor["address"], descriptor["token"]) as client:
            assert client.call("system.version")["protocol_version"] == "1"
    finally:
        for sock in strangers:
            sock.close()
    assert home.cli("daemon", "stop").code == 0
