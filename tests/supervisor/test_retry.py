"""`ChildSpec(retry_after=...)`: a child its supervisor would leave failed is retried later.

RabbitMQ's ``supervisor2`` ``{transient, Delay}`` / ``{permanent, Delay}``
is the model: a subtree that gave up, a child whose restart would exceed its
supervisor's intensity, or an operator's restart that failed, waits
``failed`` (its entry says until when) and is tried again, for as long as
it fails; an operator's call cancels the wait at once.
"""

from __future__ import annotations

import json
import time

import pytest
import trio
import trio.testing

from bicameral.supervisor import (
    Backoff,
    ChildSpec,
    ChildStartError,
    Restart,
    Strategy,
    Supervisor,
)
from tests.supervisor.conftest import Ctl, running, settle


def _subtree(c: Ctl, *, max_seconds: float = 5.0) -> Supervisor:
    """A subtree that gives up at its child's first crash."""
    return Supervisor("sub", [ChildSpec("c", c)], max_restarts=0, max_seconds=max_seconds)


async def _give_up(root: Supervisor, c: Ctl) -> float:
    """Crash `c` so that its subtree gives up; the mock time the retry was set at."""
    c.crash()
    await root.wait_until(lambda: root.child("sub").retry_at is not None)
    return trio.current_time()


async def test_a_subtree_that_gives_up_is_retried_after_the_delay_and_shows_when(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c, other = Ctl("c"), Ctl("other")
    root = Supervisor(
        "root",
        [
            ChildSpec("sub", _subtree(c), restart=Restart.TRANSIENT, retry_after=300.0),
            ChildSpec("other", other),
        ],
        max_restarts=0,
    )
    async with running(root):
        failed_at = await _give_up(root, c)
        entry = root.snapshot()["children"][0]
        json.dumps(entry)
        assert entry["state"] == "failed" and "c crashed" in entry["last_exit"]["error"]
        assert entry["retry_at"] == pytest.approx(time.time() + 300, abs=5)
        assert root.snapshot()["children"][1]["retry_at"] is None  # nothing pending there
        await trio.sleep(299)
        assert c.runs == 1 and root.child("sub").state == "failed"
        await c.next_run()
        assert trio.current_time() - failed_at == pytest.approx(300)
        await root.wait_until(lambda: root.child("sub").state == "running")
        entry = root.snapshot()["children"][0]
        assert entry["retry_at"] is None and entry["restarts"] == 1
        # A retry is no give-up of the parent, whose intensity is 0.
        assert root.state == "running" and other.runs == 1


async def test_a_backoff_grows_per_consecutive_give_up_and_starts_over_once_it_stayed_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Ctl("c")
    retry = Backoff(initial=10.0, maximum=35.0, factor=2.0, jitter=0.0)
    sub = _subtree(c, max_seconds=60.0)
    root = Supervisor("root", [ChildSpec("sub", sub, restart=Restart.TRANSIENT, retry_after=retry)])
    waits = []
    async with running(root):
        for _ in range(4):
            failed_at = await _give_up(root, c)
            due = root.snapshot()["children"][0]["retry_at"] - time.time()
            await c.next_run()
            waits.append(trio.current_time() - failed_at)
            assert due == pytest.approx(waits[-1], abs=5)
        assert waits == pytest.approx([10, 20, 35, 35])  # doubling, capped at the maximum
        # Up for the subtree's own max_seconds (60 s, longer than root's 5 s):
        # the next failure is a new one, and the delays start over.
        await trio.sleep(59)
        failed_at = await _give_up(root, c)
        await c.next_run()
        assert trio.current_time() - failed_at == pytest.approx(35)
        await trio.sleep(61)
        failed_at = await _give_up(root, c)
        await c.next_run()
        assert trio.current_time() - failed_at == pytest.approx(10)


async def test_a_child_over_the_intensity_is_retried_instead_of_the_supervisor_giving_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    w, other = Ctl("w"), Ctl("other")
    root = Supervisor(
        "root",
        [ChildSpec("w", w, retry_after=60.0), ChildSpec("other", other)],
        max_restarts=1,
        max_seconds=100,
    )
    async with running(root):
        w.crash()
        await w.next_run()  # the first crash is within the intensity: restarted at once
        await settle()
        w.crash()  # the second exceeds it
        await root.wait_until(lambda: root.child("w").retry_at is not None)
        failed_at = trio.current_time()
        assert root.state == "running" and root.child("w").state == "failed"
        assert other.runs == 1
        await w.next_run()
        assert trio.current_time() - failed_at == pytest.approx(60)
        await root.wait_until(lambda: root.child("w").state == "running")
        assert root.child("w").restarts == 2 and root.state == "running"


async def test_a_group_child_over_the_intensity_is_retried_with_its_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Ctl("a"), Ctl("b")
    root = Supervisor(
        "root",
        [ChildSpec("a", a, retry_after=50.0), ChildSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=0,
    )
    async with running(root):
        a.crash()
        await root.wait_until(lambda: root.child("a").retry_at is not None)
        await trio.sleep(49)
        assert b.runs == 1 and root.state == "running"
        await root.wait_until(lambda: a.runs == 2 and b.runs == 2)
        await root.wait_until(lambda: root.child("b").state == "running")
        assert root.child("a").state == "running" and root.child("a").retry_at is None


async def test_an_operator_restart_that_fails_to_start_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    w = Ctl("w")
    root = Supervisor("root", [ChildSpec("w", w, restart=Restart.TRANSIENT, retry_after=30.0)])
    async with running(root):
        w.fail_before_ready = RuntimeError("not yet")
        with pytest.raises(ChildStartError):
            await root.restart_child("w")
        assert root.child("w").state == "failed" and root.child("w").retry_at is not None
        w.fail_before_ready = None
        await w.next_run()
        await root.wait_until(lambda: root.child("w").state == "running")
        assert w.runs == 3 and root.child("w").retry_at is None


@pytest.mark.parametrize("operation", ["restart_child", "terminate_child", "delete_child", "stop"])
async def test_an_operator_call_cancels_a_pending_retry_at_once(
    operation: str, autojump_clock: trio.testing.MockClock
) -> None:
    c = Ctl("c")
    root = Supervisor(
        "root", [ChildSpec("sub", _subtree(c), restart=Restart.TRANSIENT, retry_after=300.0)]
    )
    async with running(root):
        failed_at = await _give_up(root, c)
        if operation == "stop":
            await root.stop()
            assert root.state == "stopped"
        else:
            await getattr(root, operation)("sub")
        assert trio.current_time() == failed_at  # nobody waited for the retry's delay
        runs = c.runs
        if operation == "restart_child":
            assert runs == 2 and root.child("sub").state == "running"
        elif operation == "terminate_child":
            assert root.child("sub").state == "failed"  # kept, as OTP keeps a failed one
        elif operation == "delete_child":
            assert [child.name for child in root.children] == []
        for child in root.children:
            assert child.retry_at is None
        await trio.sleep(1000)
        assert c.runs == runs  # the retry never fired


async def test_no_retry_for_a_transient_child_that_returned_normally(
    autojump_clock: trio.testing.MockClock,
) -> None:
    w = Ctl("w")
    root = Supervisor("root", [ChildSpec("w", w, restart=Restart.TRANSIENT, retry_after=10.0)])
    async with running(root):
        w.exit()
        await root.wait_until(lambda: root.child("w").state == "stopped")
        assert root.child("w").retry_at is None
        await trio.sleep(100)
        assert w.runs == 1 and root.child("w").state == "stopped"


async def test_without_retry_after_a_given_up_subtree_is_never_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = Ctl("c")
    root = Supervisor("root", [ChildSpec("sub", _subtree(c), restart=Restart.TRANSIENT)])
    async with running(root):
        c.crash()
        await root.wait_until(lambda: root.child("sub").state == "failed")
        assert root.snapshot()["children"][0]["retry_at"] is None
        await trio.sleep(10_000)
        assert c.runs == 1


def test_retry_after_must_be_a_positive_delay_or_a_backoff_and_not_for_temporary() -> None:
    async def target() -> None:
        pass

    with pytest.raises(ValueError, match="> 0"):
        ChildSpec("w", target, retry_after=0)
    with pytest.raises(ValueError, match="finite"):
        ChildSpec("w", target, retry_after=float("inf"))
    with pytest.raises(ValueError, match="initial"):
        ChildSpec("w", target, retry_after=Backoff(initial=0.0))
    with pytest.raises(TypeError, match="seconds or a Backoff"):
        ChildSpec("w", target, retry_after="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TEMPORARY"):
        ChildSpec("w", target, restart=Restart.TEMPORARY, retry_after=5.0)
    spec = ChildSpec("w", target, retry_after=Backoff(initial=1.0))
    assert spec == ChildSpec("w", target, retry_after=Backoff(initial=1.0))
    assert spec != ChildSpec("w", target, retry_after=2.0)
