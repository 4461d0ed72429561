"""Restart intensity, escalation through nested supervisors, and backoff."""

from __future__ import annotations

import random

import pytest
import trio

from bicameral.supervisor import (
    Backoff,
    ChildSpec,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
)

from .conftest import Ctl, Outcome, running, settle


async def crash_at_once(n: list[int]) -> None:
    n[0] += 1
    raise RuntimeError(f"crash {n[0]}")


async def test_gives_up_after_exactly_max_restarts() -> None:
    runs = [0]
    other = Ctl("other")
    sup = Supervisor(
        "root",
        [ChildSpec("other", other), ChildSpec("bad", crash_at_once, (runs,))],
        max_restarts=3,
        max_seconds=5.0,
    )
    with pytest.raises(RestartIntensityExceeded) as info:
        await sup.run()
    # 1 initial run + 3 restarts; the 4th crash is one too many.
    assert runs[0] == 4
    assert sup.child("bad").restarts == 3
    exc = info.value
    assert (exc.supervisor, exc.child, exc.max_restarts) == ("root", "bad", 3)
    assert repr(exc.last_error) == "RuntimeError('crash 4')"
    assert exc.__cause__ is exc.last_error
    # Every child was stopped before run raised.
    assert other.exits == ["stopped"]
    assert sup.state == "failed"


async def test_crashes_spread_wider_than_max_seconds_never_give_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    ctl = Ctl("w")
    sup = Supervisor("root", [ChildSpec("w", ctl)], max_restarts=2, max_seconds=5.0)
    async with running(sup):
        for _ in range(10):
            await trio.sleep(3.0)  # at most 2 crashes in any closed 5 s window
            ctl.crash()
            await settle()
        assert sup.state == "running"
        assert sup.child("w").restarts == 10


async def test_crash_exactly_max_seconds_after_the_first_still_counts(
    autojump_clock: trio.abc.Clock,
) -> None:
    # OTP keeps restarts with Now - Then =< Period: the window is closed.
    ctl = Ctl("w")
    out = Outcome(Supervisor("root", [ChildSpec("w", ctl)], max_restarts=1, max_seconds=5.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(out.run)
        ctl.crash()
        await settle()
        await trio.sleep(5.0)
        ctl.crash()
        await out.done.wait()
    assert isinstance(out.error, RestartIntensityExceeded)


async def test_nested_supervisor_escalates_and_parent_restarts_it_then_gives_up() -> None:
    runs = [0]
    sub = Supervisor("sub", [ChildSpec("bad", crash_at_once, (runs,))], max_restarts=0)
    root = Supervisor("root", [ChildSpec("sub", sub)], max_restarts=1)
    with pytest.raises(RestartIntensityExceeded) as info:
        await root.run()
    # sub gives up at its first crash, twice; root allows one restart of sub.
    assert runs[0] == 2
    assert root.child("sub").restarts == 1
    outer = info.value
    assert outer.supervisor == "root" and outer.child == "sub"
    inner = outer.last_error
    assert isinstance(inner, RestartIntensityExceeded) and inner.supervisor == "sub"
    assert repr(inner.last_error) == "RuntimeError('crash 2')"


async def test_restarted_subtree_starts_with_a_fresh_restart_history() -> None:
    c, o = Ctl("c"), Ctl("o")
    sub = Supervisor("sub", [ChildSpec("c", c)], max_restarts=1)
    root = Supervisor(
        "root", [ChildSpec("sub", sub), ChildSpec("o", o)], strategy=Strategy.ONE_FOR_ALL
    )
    async with running(root):
        c.crash()  # sub's history: 1 restart, at its limit
        await settle()
        o.crash()  # root restarts sub: a new supervisor
        await settle()
        assert root.child("sub").restarts == 1
        c.crash()  # 1 restart in the fresh history: allowed
        await settle()
        assert sub.state == "running"
        assert c.runs == 4
        assert sub.child("c").restarts == 1  # fresh child records too


async def test_parent_snapshot_shows_a_subtree_that_gave_up_being_restarted() -> None:
    c = Ctl("c")
    sub = Supervisor("sub", [ChildSpec("c", c)], max_restarts=0)
    root = Supervisor("root", [ChildSpec("sub", sub)])
    async with running(root):
        c.crash()
        await settle()
        entry = root.snapshot()["children"][0]
        assert entry["restarts"] == 1
        assert entry["last_exit"]["reason"] == "error"
        assert "RestartIntensityExceeded" in entry["last_exit"]["error"]
        assert entry["children"][0]["state"] == "running"


def test_backoff_formula() -> None:
    b = Backoff(initial=0.5, maximum=3.0, factor=3.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 5)] == [0.5, 1.5, 3.0, 3.0]
    assert Backoff().delay(7) == 0.0
    assert Backoff(initial=1.0, maximum=10.0, factor=2.0, jitter=0).delay(10_000) == 10.0
    rng = random.Random(4)
    jittered = [Backoff(initial=2.0, jitter=0.25).delay(1, rng) for _ in range(200)]
    assert all(1.5 <= d <= 2.5 for d in jittered)
    assert max(jittered) - min(jittered) > 0.5  # it is spread, not constant


async def test_backoff_delays_are_exact_with_no_jitter(autojump_clock: trio.abc.Clock) -> None:
    ctl = Ctl("w")
    sup = Supervisor(
        "root",
        [ChildSpec("w", ctl)],
        max_restarts=100,
        max_seconds=100.0,
        backoff=Backoff(initial=1.0, maximum=5.0, factor=2.0, jitter=0.0),
    )
    async with running(sup):
        t0 = trio.current_time()
        for _ in range(5):
            ctl.crash()
            await settle()
            assert sup.child("w").state == "backoff"
            await ctl.next_run()
        assert [s - t0 for s in ctl.starts] == [0.0, 1.0, 3.0, 7.0, 12.0, 17.0]


async def test_backoff_resets_after_the_child_stayed_up_max_seconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    ctl = Ctl("w")
    sup = Supervisor(
        "root",
        [ChildSpec("w", ctl)],
        max_restarts=100,
        max_seconds=10.0,
        backoff=Backoff(initial=1.0, maximum=60.0, factor=2.0, jitter=0.0),
    )
    async with running(sup):
        for _ in range(2):
            ctl.crash()
            await ctl.next_run()
        await trio.sleep(10.0)  # healthy for a whole period
        t = trio.current_time()
        ctl.crash()
        await ctl.next_run()
        assert trio.current_time() - t == 1.0  # back to the first step, not 4.0


async def test_group_restart_waits_the_failed_childs_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    a, b = Ctl("a"), Ctl("b")
    sup = Supervisor(
        "root",
        [ChildSpec("a", a), ChildSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=10,
        backoff=Backoff(initial=2.0, jitter=0.0),
    )
    async with running(sup):
        t = trio.current_time()
        b.crash()
        await a.next_run()
        assert trio.current_time() - t == 2.0
        await settle()
        assert (a.runs, b.runs) == (2, 2)


async def test_backoff_jitter_spreads_the_delay(autojump_clock: trio.abc.Clock) -> None:
    ctl = Ctl("w")
    sup = Supervisor(
        "root",
        [ChildSpec("w", ctl)],
        max_restarts=100,
        max_seconds=1000.0,
        backoff=Backoff(initial=1.0, maximum=1.0, jitter=0.5),
        rng=random.Random(1),
    )
    expected = [
        Backoff(initial=1.0, maximum=1.0, jitter=0.5).delay(1, r) for r in [random.Random(1)]
    ]
    async with running(sup):
        t = trio.current_time()
        ctl.crash()
        await ctl.next_run()
        assert trio.current_time() - t == pytest.approx(expected[0])
        assert 0.5 <= expected[0] <= 1.5 and expected[0] != 1.0
