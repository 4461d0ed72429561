"""`Supervisor.snapshot()`: plain JSON-serialisable data with SPEC §3's keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from bicameral.supervisor import ChildSpec, Restart, Strategy, Supervisor, current_child

from .conftest import Ctl, running, settle

SUPERVISOR_KEYS = {"name", "kind", "state", "strategy", "restarts", "started_at", "children"}
CHILD_KEYS = {"name", "kind", "state", "restarts", "started_at", "last_exit"}
STATES = {"starting", "running", "backoff", "stopping", "stopped", "failed"}


def walk(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = [entry]
    for child in entry.get("children", []):
        out += walk(child)
    return out


async def test_snapshot_shape_and_json_round_trip() -> None:
    w = Ctl("worker")

    async def opaque(*, task_status: Any) -> None:
        task_status.started(object())  # not JSON-serialisable: left out
        await trio.sleep_forever()

    sub = Supervisor("sub", [ChildSpec("inner", Ctl("inner"))], strategy=Strategy.REST_FOR_ONE)
    root = Supervisor(
        "root",
        [
            ChildSpec("worker", w),
            ChildSpec("opaque", opaque),
            ChildSpec("sub", sub, restart=Restart.TRANSIENT),
        ],
    )
    async with running(root):
        w.crash(RuntimeError("boom"))
        await settle()
        snap = root.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap.keys() >= SUPERVISOR_KEYS
    assert (snap["name"], snap["kind"], snap["state"], snap["strategy"]) == (
        "root",
        "supervisor",
        "running",
        "one_for_one",
    )
    assert snap["restarts"] == 0
    assert isinstance(snap["started_at"], float)
    for entry in walk(snap)[1:]:
        assert entry.keys() >= CHILD_KEYS, entry
        assert entry["state"] in STATES
    worker, opaque_entry, sub_entry = snap["children"]
    assert worker["kind"] == "worker"
    assert worker["restarts"] == 1
    assert worker["started_value"] == 2
    assert worker["last_exit"]["reason"] == "error"
    assert worker["last_exit"]["error"] == "RuntimeError('boom')"
    assert isinstance(worker["last_exit"]["at"], float)
    assert "started_value" not in opaque_entry
    assert opaque_entry["last_exit"] is None
    assert sub_entry["kind"] == "supervisor"
    assert sub_entry["strategy"] == "rest_for_one"
    assert sub_entry["restarts"] == 0  # the parent's view: how often it restarted sub
    assert [c["name"] for c in sub_entry["children"]] == ["inner"]


async def test_snapshot_before_and_after_run() -> None:
    sup = Supervisor("root", [ChildSpec("w", Ctl("w"))])
    before = sup.snapshot()
    assert before["state"] == "stopped"
    assert before["children"][0]["state"] == "stopped"
    async with running(sup):
        await sup.stop()
    after = sup.snapshot()
    assert after["state"] == "stopped"
    assert json.loads(json.dumps(after)) == after


async def test_snapshot_shows_backoff_state(autojump_clock: trio.abc.Clock) -> None:
    from bicameral.supervisor import Backoff

    w = Ctl("w")
    sup = Supervisor("root", [ChildSpec("w", w)], backoff=Backoff(initial=1.0, jitter=0))
    async with running(sup):
        w.crash()
        await settle()
        assert sup.snapshot()["children"][0]["state"] == "backoff"
        await w.next_run()
        await settle()
        assert sup.snapshot()["children"][0]["state"] == "running"


async def test_a_child_reports_its_state_value_and_error() -> None:
    reported = trio.Event()
    go_on = trio.Event()

    async def healer(*, task_status: trio.TaskStatus[str]) -> None:
        me = current_child()
        task_status.started("up")
        me.report(state="backoff", value={"health": "restarting"}, error="EOF", at=12.5)
        reported.set()
        await go_on.wait()
        me.report(state="running", value={"health": "ok"})
        await me.stopping.wait()
        me.report(state="failed")  # the supervisor's own view wins while stopping

    sup = Supervisor("root", [ChildSpec("h", healer)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await reported.wait()
        (entry,) = sup.snapshot()["children"]
        assert entry["state"] == "backoff"
        assert entry["started_value"] == {"health": "restarting"}
        assert entry["last_exit"] == {"reason": "error", "error": "EOF", "at": 12.5}
        assert entry["restarts"] == 0  # a report is not a restart
        go_on.set()
        await trio.testing.wait_all_tasks_blocked()
        (entry,) = sup.snapshot()["children"]
        assert entry["state"] == "running"
        assert entry["started_value"] == {"health": "ok"}
        assert entry["last_exit"]["error"] == "EOF"  # kept until the next exit
        assert entry["restarts"] == 0  # only the supervisor's restarts count
        await sup.stop()
        assert sup.snapshot()["children"][0]["state"] == "stopped"
    with pytest.raises(ValueError, match="not 'stopping'"):
        sup.child("h").report(state="stopping")
