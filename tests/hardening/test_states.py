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
