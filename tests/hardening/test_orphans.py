"""No descendant outlives the daemon, whatever kills it (SPEC §6, §8.8).

Each server here runs behind a shell wrapper that also starts a child, a
grandchild and a helper that leaves the process group with ``setsid()``: the
shapes ``npx`` / ``uvx`` wrappers and their helpers take. Every process of
the tree carries a marker word on its command line, so the test finds them
without trusting the daemon's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import LIGHTSERVER, Home, alive, wait_for

pytestmark = pytest.mark.linux_only(
    "finds processes through /proc; the macOS reaper's process table is pinned in "
    "tests/platform/test_reaper.py"
)


def marked(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


TREE_SH = """#!/bin/sh
# A server wrapper as npx/uvx make them: a child with a grandchild, a helper
# that leaves the process group, then the server itself.
marker=$1 py=$2
shift 2
sh -c "$py -c 'import time; time.sleep(3600)' $marker; : $marker" &
$py -c 'import os, time; os.setsid(); time.sleep(3600)' $marker &
exec "$@"
"""


def wrapped_servers(home: Home, marker: str, *names: str) -> str:
    """config.toml: each server behind a wrapper with a child, grandchild and setsid helper.

    Per server, four processes carry `marker`: the server, the wrapper's sh
    child, its python grandchild and the setsid helper.
    """
    script = home.path / "tree.sh"
    script.write_text(TREE_SH)
    script.chmod(0o700)
    lines = []
    for name in names:
        args = [marker, sys.executable, sys.executable, LIGHTSERVER, "--name", name]
        args += ["--home-tag", str(home.path), "--tag", marker]
        lines += [
            f"[mcp.servers.{name}]",
            f"command = {json.dumps(str(script))}",
            f"args = {json.dumps(args)}",
        ]
    return "\n".join(lines) + "\n"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def test_kill_9_of_the_daemon_leaves_nothing_of_any_server_tree(home: Home) -> None:
    marker = f"bcm-{uuid.uuid4().hex[:12]}"
    home.configure(wrapped_servers(home, marker, "a", "b"))
    pid = home.start()
    # Each tree: the server, the sh child and its sleep, the setsid helper.
    tree = wait_for(lambda: len(marked(marker)) >= 8 and marked(marker), timeout=30)
    os.kill(pid, signal.SIGKILL)
    left = wait_gone(tree, timeout=2.0)
    assert not left, f"outlived the daemon's SIGKILL by 2 s: {left}"
    # The next start is clean too, and a graceful stop ends the setsid helpers.
    home.start()
    tree = wait_for(lambda: len(marked(marker)) >= 8 and marked(marker), timeout=30)
    home.stop()
    assert not wait_gone(tree, timeout=2.0)


def test_the_next_daemon_ends_what_a_killed_predecessor_and_its_reaper_left(
    home: Home,
) -> None:
    marker = f"bcm-{uuid.uuid4().hex[:12]}"
    home.configure(wrapped_servers(home, marker, "a"))
    pid = home.start()
    tree = wait_for(lambda: len(marked(marker)) >= 4 and marked(marker), timeout=30)
    reapers = [
        p
        for p in marked("_reaper_main.py")
        if str(home.path).encode() in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert len(reapers) == 1
    # Both die at once: nobody is left to sweep, until the next daemon starts.
    os.kill(reapers[0], signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid) and not alive(reapers[0]))
    survivors = [p for p in tree if alive(p)]
    assert survivors, "expected the setsid helper at least to survive without a reaper"
    home.start()
    assert not wait_gone(survivors, timeout=3.0), "the next daemon left its predecessor's tree"
    home.stop()


def test_a_process_of_ours_without_the_tag_is_never_signalled(home: Home) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "BICAMERAL_DAEMON"}
    bystander = subprocess.Popen(["sleep", "3600"], env=env)
    try:
        home.configure(home.test_servers("a"))
        pid = home.start()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid))
        time.sleep(0)  # nothing to wait for: the bystander must simply still be there
        home.start()
        home.stop()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
