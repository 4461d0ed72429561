"""The operator API: start_child, restart_child, terminate_child, delete_child."""

from __future__ import annotations

import pytest
import trio

from bicameral.supervisor import (
    ChildSpec,
    ChildStartError,
    Restart,
    Strategy,
    Supervisor,
)

from .conftest import Ctl, running, settle


async def test_start_child_appends_starts_and_returns_its_entry(log: list[str]) -> None:
    a, b = Ctl("a", log), Ctl("b", log)
    sup = Supervisor("root", [ChildSpec("a", a)])
    async with running(sup):
        entry = await sup.start_child(ChildSpec("b", b))
        assert (entry["name"], entry["state"], entry["started_value"]) == ("b", "running", 1)
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["a", "b"]
        with pytest.raises(ValueError, match="already has a child"):
            await sup.start_child(ChildSpec("b", Ctl("b2")))
        log.clear()
        await sup.stop()
    assert log == ["stop b", "stop a"]  # a dynamic child stops first: it started last


async def test_start_child_that_fails_to_start_is_not_added() -> None:
    bad = Ctl("bad")
    bad.fail_before_ready = OSError("nope")
    sup = Supervisor("root", [])
    async with running(sup):
        with pytest.raises(ChildStartError):
            await sup.start_child(ChildSpec("bad", bad))
        assert sup.snapshot()["children"] == []
        assert sup.state == "running"


async def test_restart_child_is_counted_but_not_toward_intensity(log: list[str]) -> None:
    a = Ctl("a", log)
    sup = Supervisor("root", [ChildSpec("a", a)], max_restarts=0)
    async with running(sup):
        for _ in range(3):
            entry = await sup.restart_child("a")
        assert entry["restarts"] == 3
        assert entry["state"] == "running"
        assert a.exits == ["stopped"] * 3  # each stop was graceful
        assert sup.state == "running"
        with pytest.raises(KeyError):
            await sup.restart_child("nope")


async def test_terminate_child_keeps_it_stopped_until_restart_child(log: list[str]) -> None:
    a = Ctl("a", log)
    sup = Supervisor("root", [ChildSpec("a", a)])
    async with running(sup):
        await sup.terminate_child("a")
        entry = sup.snapshot()["children"][0]
        assert entry["state"] == "stopped"
        assert entry["last_exit"]["reason"] == "normal"
        await settle()
        assert a.runs == 1  # a PERMANENT child terminated on purpose is not restarted
        await sup.restart_child("a")
        assert a.runs == 2
        assert sup.child("a").state == "running"


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_terminated_child_stays_stopped_through_a_group_restart(
    strategy: Strategy, log: list[str]
) -> None:
    a, b, c = Ctl("a", log), Ctl("b", log), Ctl("c", log)
    sup = Supervisor("root", [ChildSpec(x.name, x) for x in (a, b, c)], strategy=strategy)
    async with running(sup):
        await sup.terminate_child("c")
        a.crash()
        await settle()
        assert (a.runs, b.runs, c.runs) == (2, 2, 1)
        assert sup.child("c").state == "stopped"
        await sup.restart_child("c")
        assert c.runs == 2


async def test_delete_child_stops_and_forgets_it(log: list[str]) -> None:
    a, b = Ctl("a", log), Ctl("b", log)
    sup = Supervisor("root", [ChildSpec("a", a), ChildSpec("b", b)])
    async with running(sup):
        log.clear()
        await sup.delete_child("a")
        assert log == ["stop a"]
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["b"]
        with pytest.raises(KeyError):
            await sup.restart_child("a")
        # the name is free again
        await sup.start_child(ChildSpec("a", a))
        assert a.runs == 2


async def test_terminate_child_removes_a_temporary_child() -> None:
    t = Ctl("t")
    sup = Supervisor("root", [ChildSpec("t", t, restart=Restart.TEMPORARY)])
    async with running(sup):
        await sup.terminate_child("t")
        assert sup.snapshot()["children"] == []


async def test_operator_calls_refused_when_not_running() -> None:
    sup = Supervisor("root", [ChildSpec("a", Ctl("a"))])
    with pytest.raises(RuntimeError, match="not running"):
        await sup.restart_child("a")
    with pytest.raises(RuntimeError, match="not running"):
        await sup.start_child(ChildSpec("b", Ctl("b")))
    await sup.stop()  # a no-op


async def test_dynamic_children_survive_a_restart_of_their_subtree(log: list[str]) -> None:
    # Unlike OTP (init/1 runs again), the subtree keeps its current specs.
    sub = Supervisor("sub", [])
    o = Ctl("o", log)
    root = Supervisor(
        "root", [ChildSpec("sub", sub), ChildSpec("o", o)], strategy=Strategy.ONE_FOR_ALL
    )
    async with running(root):
        d = Ctl("d", log)
        await sub.start_child(ChildSpec("d", d))
        o.crash()
        await settle()
        assert d.runs == 2
        assert sub.child("d").state == "running"


async def test_stop_during_a_group_restart_waits_for_it(
    autojump_clock: trio.abc.Clock, log: list[str]
) -> None:
    a, b = Ctl("a", log), Ctl("b", log)
    sup = Supervisor("root", [ChildSpec("a", a), ChildSpec("b", b)], strategy=Strategy.ONE_FOR_ALL)
    async with running(sup):
        b.ready_delay = 1.0
        a.crash()
        await settle()
        await sup.stop()
        assert sup.state == "stopped"
        assert (a.runs, b.runs) == (2, 2)


async def test_replace_child_keeps_its_place_in_the_start_order(log: list[str]) -> None:
    a, b, c, b2 = Ctl("a", log), Ctl("b", log), Ctl("c", log), Ctl("b2", log)
    sup = Supervisor("root", [ChildSpec(n, t) for n, t in (("a", a), ("b", b), ("c", c))])
    async with running(sup):
        await sup.restart_child("b")
        log.clear()
        entry = await sup.replace_child(ChildSpec("b", b2))
        assert log == ["stop b", "start b2", "ready b2"]  # the old one stopped gracefully first
        assert (entry["name"], entry["state"], entry["restarts"]) == ("b", "running", 0)
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["a", "b", "c"]
        with pytest.raises(KeyError):
            await sup.replace_child(ChildSpec("nope", Ctl("nope")))
        log.clear()
        await sup.stop()
    assert log == ["stop c", "stop b2", "stop a"]  # still the middle of the stop order


async def test_replace_child_with_one_that_fails_to_start_leaves_neither() -> None:
    bad = Ctl("bad")
    bad.fail_before_ready = OSError("nope")
    sup = Supervisor("root", [ChildSpec("a", Ctl("a")), ChildSpec("b", Ctl("b"))])
    async with running(sup):
        with pytest.raises(ChildStartError):
            await sup.replace_child(ChildSpec("a", bad))
        assert [ch["name"] for ch in sup.snapshot()["children"]] == ["b"]
        assert sup.state == "running"
