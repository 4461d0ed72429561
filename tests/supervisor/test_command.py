"""Process children (`Command`) under a supervisor, with real subprocesses."""

# Real processes give no event to wait on from here (their exit is observed by
# the supervisor, a reparented grandchild's by init), so these tests poll with
# short real sleeps, bounded by fail_after.
# ruff: noqa: ASYNC110

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from bicameral.supervisor import ChildSpec, Command, ProcessExitedError, Restart, Supervisor

from .conftest import alive, running

pytestmark = pytest.mark.posix("POSIX process groups, signals and sh")


async def until(pred: Callable[[], object], limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while not pred():
            await trio.sleep(0.005)


def pid_of(sup: Supervisor, name: str) -> int | None:
    for entry in sup.snapshot()["children"]:
        if entry["name"] == name and entry["state"] == "running":
            value = entry.get("started_value")
            return value["pid"] if value else None
    return None


def test_command_spec_kind_equality_and_validation() -> None:
    a = Command(["sleep", "1"], env={"A": "1"}, cwd="/tmp")
    assert a == Command(("sleep", "1"), env={"A": "1"}, cwd=Path("/tmp"))
    assert hash(a) == hash(Command(["sleep", "1"], env={"A": "1"}, cwd="/tmp"))
    assert a != Command(["sleep", "2"], env={"A": "1"}, cwd="/tmp")
    spec = ChildSpec("s", a)
    assert spec.kind == "process" and spec.shutdown == 5.0
    with pytest.raises(ValueError):
        Command("sleep 1")


async def test_crashed_process_is_restarted_with_a_new_pid() -> None:
    sup = Supervisor("root", [ChildSpec("p", Command(["sleep", "1000"]))])
    async with running(sup):
        first = pid_of(sup, "p")
        assert first is not None and alive(first)
        assert sup.snapshot()["children"][0]["kind"] == "process"
        os.kill(first, signal.SIGKILL)
        await until(lambda: pid_of(sup, "p") not in (None, first))
        second = pid_of(sup, "p")
        assert second is not None and alive(second)
        entry = sup.snapshot()["children"][0]
        assert entry["restarts"] == 1
        assert entry["last_exit"]["reason"] == "error"
        assert "killed by signal 9" in entry["last_exit"]["error"]
        await sup.stop()
        assert not alive(second)


async def test_exit_status_zero_is_normal_for_a_transient_process(tmp_path: Path) -> None:
    sup = Supervisor("root", [ChildSpec("p", Command(["true"]), restart=Restart.TRANSIENT)])
    async with running(sup):
        await until(lambda: sup.snapshot()["children"][0]["state"] == "stopped")
        entry = sup.snapshot()["children"][0]
        assert entry["last_exit"]["reason"] == "normal"
        assert entry["restarts"] == 0


async def test_a_missing_program_fails_the_start() -> None:
    from bicameral.supervisor import ChildStartError

    sup = Supervisor("root", [ChildSpec("p", Command(["/nonexistent/prog"]))])
    with pytest.raises(ChildStartError) as info:
        await sup.run()
    assert isinstance(info.value.error, FileNotFoundError)


async def test_cancelling_the_tree_leaves_no_process_or_grandchild(tmp_path: Path) -> None:
    out = tmp_path / "pids"
    script = f"sleep 1000 & echo $$ $! > {out}.tmp && mv {out}.tmp {out}; wait"
    sub = Supervisor("sub", [ChildSpec("p", Command(["sh", "-c", script]), shutdown=100)])
    root = Supervisor("root", [ChildSpec("sub", sub)])
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(root.run)
            await until(out.exists)
            leader, grandchild = map(int, out.read_text().split())
            assert alive(leader) and alive(grandchild)
            scope.cancel()
    assert not alive(leader)
    await until(lambda: not alive(grandchild), limit=5)
    assert root.snapshot()["children"][0]["children"][0]["last_exit"]["reason"] == "cancelled"


async def test_graceful_stop_sends_sigterm_to_the_group(tmp_path: Path) -> None:
    out = tmp_path / "pids"
    script = f"sleep 1000 & echo $$ $! > {out}.tmp && mv {out}.tmp {out}; wait"
    sup = Supervisor("root", [ChildSpec("p", Command(["sh", "-c", script]), shutdown=30)])
    async with running(sup):
        await until(out.exists)
        leader, grandchild = map(int, out.read_text().split())
        with trio.fail_after(10):  # SIGTERM is honoured: far less than the 30 s grace
            await sup.stop()
    assert not alive(leader)
    await until(lambda: not alive(grandchild), limit=5)
    # sh died of SIGTERM: an "error" exit, but a deliberate stop: not restarted
    assert sup.snapshot()["children"][0]["restarts"] == 0


async def test_sigterm_ignored_means_sigkill_after_the_grace(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' TERM; echo $$ > {ready}.tmp && mv {ready}.tmp {ready}; exec sleep 1000"
    sup = Supervisor("root", [ChildSpec("p", Command(["sh", "-c", script]), shutdown=4.0)])
    async with running(sup):
        await until(ready.exists)
        pid = int(ready.read_text())
        t = trio.current_time()
        await sup.stop()
        assert trio.current_time() - t == pytest.approx(4.0)
    assert not alive(pid)
    assert sup.snapshot()["children"][0]["last_exit"]["reason"] == "cancelled"


def test_process_exited_error_messages() -> None:
    assert "status 3" in str(ProcessExitedError(("x",), 1, 3))
    assert "signal 15" in str(ProcessExitedError(("x",), 1, -15))
