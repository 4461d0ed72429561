"""Nobody else gets in (issue 6): another uid against the real daemon.

Two fences: the state dir (0700) and the socket (0600) keep other users from
connecting at all; behind them the daemon checks each connection's peer
credentials (SO_PEERCRED) and refuses and logs any other uid. The tests run a
client as ``nobody`` (they need root to switch uid; they skip otherwise),
first against the fences, then with the fences opened on purpose to reach the
peer-credential check itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import Home, wait_for

NOBODY = 65534

CLIENT = """
import os, socket, sys
os.setgroups([]); os.setgid({uid}); os.setuid({uid})
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect", type(exc).__name__); sys.exit(0)
try:
    s.sendall(b'{{"jsonrpc":"2.0","id":1,"method":"system.version"}}\\n')
    data = s.recv(65536)
except OSError as exc:
    print("io", type(exc).__name__); sys.exit(0)
print("answered" if data else "closed")
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")


def as_nobody(socket_path: str) -> str:
    run = subprocess.run(
        [sys.executable, "-c", CLIENT.format(uid=NOBODY), socket_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_another_uid_cannot_even_reach_the_socket(home: Home) -> None:
    home.start()
    assert as_nobody(str(home.socket)) == "connect PermissionError"
    home.stop()


def test_another_uid_past_the_file_modes_is_refused_by_peer_credentials_and_logged(
    home: Home,
) -> None:
    home.start()
    # Open both fences, as a careless chmod would.
    home.path.chmod(0o711)
    home.socket.chmod(0o666)
    try:
        assert as_nobody(str(home.socket)) in (
            "closed",
            "io ConnectionResetError",
            "io BrokenPipeError",
        )
    finally:
        home.path.chmod(0o700)
    wait_for(
        lambda: f"refusing a connection from uid {NOBODY}" in home.log.read_text(),
        what="the refusal in the log",
    )
    assert home.cli("daemon", "status").json["status"] == "running"
    home.stop()
