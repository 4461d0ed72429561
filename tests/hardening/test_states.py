"""A daemon that is starting or stopping is never reported as something else.

``status`` says ``starting`` (exit 4) while a daemon holds the lock without a
descriptor yet, ``stopping`` while it shuts down; ``stop`` during a start
waits for it and stops it; a stale descriptor says why it is stale.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .conftest import BICAMERAL, Home, alive, daemon_pids, wait_for


def test_status_during_a_start_says_starting_and_stop_waits_and_stops_it(home: Home) -> None:
    home.install_probe_plugin()
    home.configure("[probe]\nstart_delay = 1.5\n")
    proc = home.popen("daemon", "start")
    pid = wait_for(lambda: daemon_pids(home.path), timeout=20, what="the daemon to spawn")[0]
    wait_for(lambda: home.cli("daemon", "status").code == 4, what="status to say starting")
    status = home.cli("daemon", "status")
    assert status.json["status"] == "starting", status
    assert not home.descriptor.exists()  # really before readiness
    stopped = home.cli("daemon", "stop")
    assert stopped.code == 0, stopped
    assert stopped.json["status"] == "stopped" and stopped.json["pid"] == pid, stopped
    proc.communicate(timeout=30)
    wait_for(lambda: not alive(pid), what="the daemon to exit")
    assert home.cli("daemon", "status").json["status"] == "stopped"


def test_a_stale_descriptor_of_a_dead_pid_says_it_is_not_running(home: Home) -> None:
    pid = home.start()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid))
    out = subprocess.run(
        [BICAMERAL, "--home", str(home.path), "daemon", "stop"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    result = json.loads(out.stdout)
    # Dead (or a zombie its parent, this test, has not reaped): never "not the daemon".
    assert result["stale"] is True, result
    assert result["reason"] in (
        f"pid {pid} is not running",
        f"pid {pid} has exited (a zombie not yet reaped)",
    ), result


def test_a_start_whose_daemon_died_before_ready_leaves_no_socket(home: Home) -> None:
    """SPEC §5 start: a failed start leaves no daemon, lock, socket or descriptor."""
    home.install_probe_plugin()
    home.configure("[probe]\nstart_delay = 60\n")  # never ready within this test
    proc = home.popen("daemon", "start", "--wait", "60")
    pid = wait_for(lambda: daemon_pids(home.path), timeout=30, what="the daemon to spawn")[0]
    wait_for(home.socket.exists, timeout=30, what="the daemon to bind its socket")
    os.kill(pid, signal.SIGKILL)  # dies before it is ready: no cleanup of its own
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "killed by SIGKILL" in err
    assert not os.path.lexists(home.socket), "the dead daemon's socket was left behind"
    assert not home.descriptor.exists()


def test_a_start_that_times_out_leaves_no_socket(home: Home) -> None:
    """A daemon that binds its socket but never reports ready is killed, and its socket goes."""
    from bicameral.daemon import StartError, resolve_paths, start

    bound = home.path / "bound"
    fake = home.path / "fake-daemon"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import socket, sys, time\n"
        "path = sys.argv[sys.argv.index('--socket') + 1]\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(path)\n"
        "s.listen()\n"
        f"open({str(bound)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    fake.chmod(0o700)
    wrapper = home.path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {fake} "$@"\n')
    wrapper.chmod(0o700)
    with pytest.raises(StartError, match="did not become ready"):
        start(resolve_paths(home.path), wait=10.0, python=str(wrapper))
    assert bound.exists(), "the fake daemon never bound its socket: the test proved nothing"
    assert not os.path.lexists(home.socket), "the killed daemon's socket was left behind"
