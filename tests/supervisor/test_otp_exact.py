"""The places where "OTP-style" must mean exactly what Erlang/OTP does.

Each test pins one defect that was measured against OTP's supervisor and
fixed: a group-restart backoff that delayed a stop, error text that grew with
the depth of the tree, a restart storm that starved the event loop, a
recursive snapshot, and giving up as OTP does (reason ``shutdown``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
import trio

from bicameral.supervisor import (
    Backoff,
    ChildSpec,
    ChildStartError,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    current_child,
)

from .conftest import Ctl, Outcome, running, settle

# -- 1. a group restart's backoff never delays an operator ---------------------


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_stop_during_a_group_backoff_acts_at_once_and_starts_nobody(
    strategy: Strategy, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = Ctl("a"), Ctl("b")
    sup = Supervisor(
        "root",
        [ChildSpec("a", a), ChildSpec("b", b)],
        strategy=strategy,
        backoff=Backoff(initial=30.0, maximum=30.0, jitter=0.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        a.crash()
        await sup.wait_until(lambda: sup.child("a").state == "backoff")
        t0 = trio.current_time()
        await sup.stop()
        assert trio.current_time() - t0 < 1.0  # not the 30 s backoff
    assert (a.runs, b.runs) == (1, 1)  # nobody started again just to be stopped
    assert sup.state == "stopped"


async def test_terminate_child_during_a_group_backoff_acts_at_once_and_it_stays_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Ctl("a"), Ctl("b")
    sup = Supervisor(
        "root",
        [ChildSpec("a", a), ChildSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(initial=30.0, maximum=30.0, jitter=0.0),
    )
    async with running(sup):
        a.crash()
        await sup.wait_until(lambda: sup.child("b").state == "backoff")
        t0 = trio.current_time()
        await sup.terminate_child("b")
        assert trio.current_time() - t0 < 1.0
        assert sup.child("b").state == "stopped"
        # The group restart goes on after its backoff, without b.
        await sup.wait_until(lambda: sup.child("a").state == "running")
        assert trio.current_time() - t0 >= 29.0
        assert (a.runs, b.runs) == (2, 1)
        assert sup.child("b").state == "stopped"


async def test_restart_child_during_a_group_backoff_starts_it_at_once_and_only_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Ctl("a"), Ctl("b")
    sup = Supervisor(
        "root",
        [ChildSpec("a", a), ChildSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(initial=30.0, maximum=30.0, jitter=0.0),
    )
    async with running(sup):
        a.crash()
        await sup.wait_until(lambda: sup.child("b").state == "backoff")
        t0 = trio.current_time()
        await sup.restart_child("b")
        assert trio.current_time() - t0 < 1.0 and b.runs == 2
        await sup.wait_until(lambda: sup.child("a").state == "running")
        assert (a.runs, b.runs) == (2, 2)  # the group restart skipped the running b


def test_stop_during_a_group_backoff_acts_at_once_under_asyncio() -> None:
    runs = {"a": 0, "b": 0}

    async def worker(name: str, *, task_status: Any) -> None:
        runs[name] += 1
        task_status.started()
        if name == "a" and runs["a"] == 1:
            raise RuntimeError("a crashes once")
        await current_child().stopping.wait()

    async def main() -> float:
        sup = Supervisor(
            "root",
            [ChildSpec("a", worker, ("a",)), ChildSpec("b", worker, ("b",))],
            strategy=Strategy.ONE_FOR_ALL,
            backoff=Backoff(initial=30.0, maximum=30.0, jitter=0.0),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await sup.wait_until(lambda: sup.child("a").state == "backoff")
            t0 = anyio.current_time()
            await sup.stop()
            return anyio.current_time() - t0

    took = anyio.run(main, backend="asyncio")
    assert took < 5.0  # real seconds: the backoff is 30
    assert runs == {"a": 1, "b": 1}


# -- 2. error text does not grow with the depth of the tree --------------------


def _chain(depth: int, leaf: ChildSpec, restart: Restart = Restart.PERMANENT) -> Supervisor:
    sup = Supervisor(f"level{depth - 1}", [leaf], max_restarts=0)
    for level in range(depth - 2, -1, -1):
        sup = Supervisor(f"level{level}", [ChildSpec("sub", sup, restart=restart)], max_restarts=0)
    return sup


async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("the original 'quoted' error")


async def test_give_up_through_fifty_levels_names_each_level_and_the_original_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="bicameral.supervisor")
    sizes = []
    for depth in (2, 8, 50):
        root = _chain(depth, ChildSpec("leaf", boom))
        with pytest.raises(RestartIntensityExceeded) as info:
            await root.run()
        text = str(info.value)
        sizes.append(len(text))
        assert text.startswith("supervisor 'level0':")
        assert text.count("the original") == 1
        assert repr(info.value.original) == repr(ValueError("the original 'quoted' error"))
    assert sizes[2] - sizes[0] < 20  # the names' digits, nothing more


async def test_a_start_failure_through_fifty_levels_stays_one_short_line() -> None:
    async def fails(*, task_status: Any) -> None:
        raise ValueError("cannot start")

    root = _chain(50, ChildSpec("leaf", fails))
    with pytest.raises(ChildStartError) as info:
        await root.run()
    text = str(info.value)
    assert len(text) < 200, text
    assert text.count("cannot start") == 1
    assert isinstance(info.value.original, ValueError)


# -- 3. a restart storm passes a scheduling point per restart ------------------


async def test_a_child_that_fails_without_awaiting_does_not_starve_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="bicameral.supervisor")
    ceiling = 20_000
    runs = [0]
    seen_by_bystander: list[int] = []

    async def storm() -> None:
        runs[0] += 1
        if runs[0] >= ceiling:
            await trio.sleep_forever()
        raise RuntimeError("fails without awaiting")

    async def bystander() -> None:
        for _ in range(3):
            await trio.lowlevel.checkpoint()
            seen_by_bystander.append(runs[0])

    sup = Supervisor("root", [ChildSpec("s", storm)], max_restarts=10**9, max_seconds=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await bystander()
        nursery.cancel_scope.cancel()
    # Without a checkpoint per restart the whole storm ran before anyone else.
    assert seen_by_bystander[-1] < ceiling


async def test_outside_deadline_fires_during_a_restart_storm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="bicameral.supervisor")
    ceiling = 200_000
    runs = [0]

    async def storm() -> None:
        runs[0] += 1
        if runs[0] >= ceiling:
            await trio.sleep_forever()
        raise RuntimeError("fails without awaiting")

    # A tiny period: the intensity is never reached, the storm never ends.
    sup = Supervisor("root", [ChildSpec("s", storm)], max_restarts=10, max_seconds=1e-9)
    with trio.move_on_after(0.05) as scope:
        await sup.run()
    assert scope.cancelled_caught
    assert runs[0] < ceiling
    assert sup.state == "stopped"


# -- 4. snapshot of a deep tree ------------------------------------------------


def test_snapshot_of_a_tree_a_thousand_levels_deep() -> None:
    async def leaf() -> None:
        await trio.sleep_forever()

    root = _chain(1000, ChildSpec("leaf", leaf))
    snap = root.snapshot()
    depth = 0
    node = snap
    while node["children"] and node["children"][0]["kind"] == "supervisor":
        node = node["children"][0]
        depth += 1
    assert depth == 999
    assert node["children"][0]["name"] == "leaf"


# -- 5. giving up, as OTP does it ----------------------------------------------


@pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.TEMPORARY])
async def test_a_subtree_that_gives_up_under_a_transient_or_temporary_entry_stays_failed(
    restart: Restart, autojump_clock: trio.testing.MockClock
) -> None:
    c, other = Ctl("c"), Ctl("other")
    sub = Supervisor("sub", [ChildSpec("c", c)], max_restarts=0)
    root = Supervisor(
        "root", [ChildSpec("sub", sub, restart=restart), ChildSpec("other", other)], max_restarts=0
    )
    async with running(root):
        c.crash()
        await root.wait_until(lambda: root.child("sub").state == "failed")
        await settle()
        entry = root.snapshot()["children"][0]
        assert entry["state"] == "failed" and entry["restarts"] == 0
        assert "gave up" not in entry["last_exit"]["error"]  # its own error, named once
        assert "RestartIntensityExceeded" in entry["last_exit"]["error"]
        assert "c crashed" in entry["last_exit"]["error"]
        # The parent did not count it (max_restarts=0 would have given up).
        assert root.state == "running" and other.runs == 1
        await anyio.sleep(600)  # nothing retries it behind the operator's back
        assert c.runs == 1 and root.child("sub").state == "failed"
        await root.restart_child("sub")
        assert root.child("sub").state == "running" and c.runs == 2
        assert sub.child("c").state == "running"


async def test_a_subtree_that_gives_up_under_a_permanent_entry_is_restarted_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Ctl("c")
    sub = Supervisor("sub", [ChildSpec("c", c)], max_restarts=0)
    root = Supervisor("root", [ChildSpec("sub", sub)], max_restarts=1, max_seconds=100)
    out = Outcome(root)
    async with trio.open_nursery() as nursery:
        await nursery.start(out.run)
        c.crash()
        await root.wait_until(lambda: root.child("sub").restarts == 1)
        await root.wait_until(lambda: sub.state == "running")
        assert c.runs == 2
        c.crash()  # the second give-up exceeds root's intensity: it escalates
        await out.done.wait()
    assert isinstance(out.error, RestartIntensityExceeded)
    assert out.error.supervisor == "root" and out.error.child == "sub"
    assert isinstance(out.error.original, RuntimeError)


def test_give_up_as_shutdown_under_asyncio() -> None:
    async def crash() -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("x")

    async def main() -> dict[str, Any]:
        sub = Supervisor("sub", [ChildSpec("c", crash)], max_restarts=0)
        root = Supervisor("root", [ChildSpec("sub", sub, restart=Restart.TRANSIENT)])
        async with anyio.create_task_group() as tg:
            await tg.start(root.run)
            await root.wait_until(lambda: root.child("sub").state == "failed")
            snap = root.snapshot()
            await root.stop()
        return snap

    snap = anyio.run(main, backend="asyncio")
    assert snap["state"] == "running"
    assert snap["children"][0]["state"] == "failed"
