"""Sequential start with readiness, graceful stop, cancellation from outside."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from bicameral.supervisor import (
    ChildSpec,
    ChildStartError,
    Restart,
    RestartIntensityExceeded,
    Supervisor,
    current_child,
)

from .conftest import Ctl, count_tasks, running, settle


async def test_children_start_one_at_a_time_after_readiness(
    autojump_clock: trio.abc.Clock, log: list[str]
) -> None:
    a, b, c = Ctl("a", log), Ctl("b", log), Ctl("c", log)
    a.ready_delay = 3.0  # b must not start before a reports ready
    sup = Supervisor("root", [ChildSpec(n.name, n) for n in (a, b, c)])
    async with trio.open_nursery() as nursery:
        t = trio.current_time()
        await nursery.start(sup.run)
        # nursery.start returned only once every child had started
        assert trio.current_time() - t == 3.0
        assert log == ["start a", "ready a", "start b", "ready b", "start c", "ready c"]
        assert [ch["started_value"] for ch in sup.snapshot()["children"]] == [1, 1, 1]
        nursery.cancel_scope.cancel()


async def test_a_target_without_task_status_counts_as_started_when_spawned(
    log: list[str],
) -> None:
    async def plain() -> None:
        log.append("plain runs")
        await trio.sleep_forever()

    b = Ctl("b", log)
    sup = Supervisor("root", [ChildSpec("plain", plain), ChildSpec("b", b)])
    async with running(sup):
        await settle()
        assert sup.child("plain").state == "running"
        assert "started_value" not in sup.snapshot()["children"][0]
        assert set(log) == {"plain runs", "start b", "ready b"}


@pytest.mark.parametrize("returns", [False, True])
async def test_readiness_failure_at_start_stops_the_started_ones_and_fails_run(
    returns: bool, log: list[str]
) -> None:
    a, b, c = Ctl("a", log), Ctl("b", log), Ctl("c", log)
    if returns:
        b.return_before_ready = True
    else:
        b.fail_before_ready = ValueError("no config")
    sup = Supervisor("root", [ChildSpec(n.name, n) for n in (a, b, c)])
    with pytest.raises(ChildStartError) as info:
        await sup.run()
    assert info.value.child == "b"
    if returns:
        assert isinstance(info.value.error, RuntimeError)
    else:
        assert repr(info.value.error) == "ValueError('no config')"
        assert info.value.__cause__ is info.value.error
    assert c.runs == 0
    assert log[-1] == "stop a"  # a was stopped before run raised
    assert a.exits == ["stopped"]
    assert sup.state == "failed"


async def test_readiness_failure_on_restart_counts_as_a_crash() -> None:
    ctl = Ctl("w")
    sup = Supervisor("root", [ChildSpec("w", ctl)], max_restarts=5)
    with pytest.RaisesGroup(RestartIntensityExceeded):
        async with running(sup):
            ctl.fail_before_ready = RuntimeError("cannot come back")
            ctl.crash()
            await trio.sleep_forever()
    # 1 first run + 5 restarts that fail before ready; the 6th crash is too many.
    assert ctl.runs == 6
    assert sup.child("w").restarts == 5


async def test_stop_is_graceful_and_in_reverse_start_order(log: list[str]) -> None:
    ctls = [Ctl(n, log) for n in "abc"]
    sup = Supervisor("root", [ChildSpec(c.name, c) for c in ctls])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        log.clear()
        await sup.stop()
        assert sup.state == "stopped"
    assert log == ["stop c", "stop b", "stop a"]
    for c in ctls:
        assert c.exits == ["stopped"]  # returned on `stopping`, not cancelled
    assert all(ch["last_exit"]["reason"] == "normal" for ch in sup.snapshot()["children"])


async def test_a_child_ignoring_stopping_is_cancelled_after_its_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    stubborn = Ctl("stubborn", honour_stop=False)
    polite = Ctl("polite")
    sup = Supervisor(
        "root",
        [ChildSpec("stubborn", stubborn, shutdown=2.5), ChildSpec("polite", polite, shutdown=9)],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t = trio.current_time()
        await sup.stop()
        assert trio.current_time() - t == 2.5  # polite returned at once; stubborn used its grace
    entries = {ch["name"]: ch for ch in sup.snapshot()["children"]}
    assert entries["stubborn"]["last_exit"]["reason"] == "cancelled"
    assert entries["polite"]["last_exit"]["reason"] == "normal"


async def test_shutdown_zero_cancels_without_setting_stopping(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[bool] = []

    async def child(*, task_status: Any) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            seen.append(current_child().stopping.is_set())

    sup = Supervisor("root", [ChildSpec("w", child, shutdown=0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t = trio.current_time()
        await sup.stop()
        assert trio.current_time() == t
    assert seen == [False]
    assert sup.snapshot()["children"][0]["last_exit"]["reason"] == "cancelled"


async def test_default_graces_worker_five_seconds_supervisor_unlimited() -> None:
    assert ChildSpec("w", Ctl("w")).shutdown == 5.0
    sub_spec = ChildSpec("s", Supervisor("s"))
    assert sub_spec.shutdown is None
    assert sub_spec.grace == math.inf
    assert ChildSpec("w", Ctl("w"), shutdown=0).shutdown == 0
    with pytest.raises(ValueError):
        ChildSpec("w", Ctl("w"), shutdown=-1)


async def test_a_nested_supervisors_grace_covers_its_subtree(
    autojump_clock: trio.abc.Clock, log: list[str]
) -> None:
    inner = Ctl("inner", log, honour_stop=False)
    after = Ctl("after", log)
    sub = Supervisor("sub", [ChildSpec("inner", inner, shutdown=7.0)])
    root = Supervisor("root", [ChildSpec("sub", sub), ChildSpec("after", after)])
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        log.clear()
        t = trio.current_time()
        await root.stop()
        # Unlimited grace for sub: its child's 7 s grace decides.
        assert trio.current_time() - t == 7.0
    assert log == ["stop after", "stop inner"]
    assert root.snapshot()["children"][0]["last_exit"]["reason"] == "normal"


async def test_outside_cancellation_cancels_the_tree_at_once_without_restarts(
    autojump_clock: trio.abc.Clock,
) -> None:
    before = count_tasks()
    slow = [Ctl(f"w{i}", honour_stop=False) for i in range(3)]
    sub = Supervisor("sub", [ChildSpec(c.name, c, shutdown=100) for c in slow[1:]])
    root = Supervisor(
        "root",
        [ChildSpec("w0", slow[0], shutdown=100), ChildSpec("sub", sub)],
        max_restarts=0,  # a single restart would make run raise
    )
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(root.run)
            assert count_tasks() > before
            t = trio.current_time()
            scope.cancel()
    assert scope.cancelled_caught
    assert trio.current_time() == t  # no grace waited
    assert count_tasks() == before  # nothing left running
    assert [c.runs for c in slow] == [1, 1, 1]
    snap = root.snapshot()
    assert snap["state"] == "stopped"
    reasons = [snap["children"][0]["last_exit"]["reason"]] + [
        ch["last_exit"]["reason"] for ch in snap["children"][1]["children"]
    ]
    assert reasons == ["cancelled"] * 3


async def test_outside_cancellation_during_backoff_or_start_is_clean(
    autojump_clock: trio.abc.Clock,
) -> None:
    before = count_tasks()
    starting = Ctl("starting")
    starting.ready_delay = 50.0
    with trio.move_on_after(10):
        await Supervisor("root", [ChildSpec("s", starting)]).run()
    assert count_tasks() == before
    assert starting.runs == 1


async def test_stopping_flag_is_per_run(log: list[str]) -> None:
    flags: list[object] = []

    async def child(*, task_status: Any) -> None:
        flags.append(current_child().stopping)
        task_status.started()
        await trio.sleep_forever()

    sup = Supervisor("root", [ChildSpec("w", child, shutdown=0, restart=Restart.PERMANENT)])
    async with running(sup):
        await sup.restart_child("w")
        await settle()
    assert len(flags) == 2


async def test_run_cannot_run_twice_at_once() -> None:
    sup = Supervisor("root", [ChildSpec("w", Ctl("w"))])
    async with running(sup):
        with pytest.raises(RuntimeError, match="already running"):
            await sup.run()


async def test_current_child_outside_a_child_raises() -> None:
    with pytest.raises(RuntimeError):
        current_child()


async def test_current_child_names_the_child_and_counts_restarts() -> None:
    seen: list[tuple[str, int]] = []

    async def child(*, task_status: Any) -> None:
        h = current_child()
        seen.append((h.name, h.restarts))
        task_status.started()
        if h.restarts < 2:
            raise RuntimeError("again")
        await trio.sleep_forever()

    async with running(Supervisor("root", [ChildSpec("me", child)])):
        await settle()
    assert seen == [("me", 0), ("me", 1), ("me", 2)]


async def test_a_subtree_counts_as_started_once_all_its_children_have(
    autojump_clock: trio.abc.Clock, log: list[str]
) -> None:
    inner = [Ctl(f"i{k}", log) for k in range(2)]
    inner[1].ready_delay = 2.0
    after = Ctl("after", log)
    sub = Supervisor("sub", [ChildSpec(c.name, c) for c in inner])
    root = Supervisor("root", [ChildSpec("sub", sub), ChildSpec("after", after)])
    async with running(root):
        assert log.index("ready i1") < log.index("start after")
        assert root.snapshot()["children"][0]["state"] == "running"
