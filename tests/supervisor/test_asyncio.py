"""The same supervisor under asyncio, through anyio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bicameral.supervisor import (
    ChildSpec,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    current_child,
)


def test_tree_runs_restarts_and_stops_under_asyncio() -> None:
    log: list[str] = []

    async def worker(name: str, *, task_status: Any) -> None:
        log.append(f"start {name}")
        task_status.started(name)
        h = current_child()
        if name == "a" and h.restarts == 0:
            raise RuntimeError("first run crashes")
        await h.stopping.wait()
        log.append(f"stop {name}")

    async def main() -> dict[str, Any]:
        sub = Supervisor("sub", [ChildSpec("b", worker, ("b",))])
        sup = Supervisor(
            "root",
            [ChildSpec("a", worker, ("a",)), ChildSpec("sub", sub)],
            strategy=Strategy.ONE_FOR_ONE,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await anyio.wait_all_tasks_blocked()
            snap = sup.snapshot()
            await sup.stop()
        return snap

    snap = anyio.run(main, backend="asyncio")
    assert snap["children"][0]["restarts"] == 1
    assert snap["children"][1]["children"][0]["state"] == "running"
    assert log[-2:] == ["stop b", "stop a"]


def test_intensity_and_outside_cancellation_under_asyncio() -> None:
    async def crash() -> None:
        raise ValueError("x")

    async def forever() -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        with pytest.raises(RestartIntensityExceeded):
            await Supervisor("root", [ChildSpec("c", crash)], max_restarts=2).run()
        sup = Supervisor("root", [ChildSpec("f", forever, shutdown=100)])
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                scope.cancel()
        assert sup.snapshot()["children"][0]["last_exit"]["reason"] == "cancelled"
        assert sup.child("f").restarts == 0

    anyio.run(main, backend="asyncio")


def test_process_child_restarts_and_is_stopped_under_asyncio() -> None:
    import os
    import signal

    import psutil

    from bicameral.supervisor import Command

    def pid_of(sup: Supervisor) -> int | None:
        entry = sup.snapshot()["children"][0]
        value = entry.get("started_value")
        return value["pid"] if entry["state"] == "running" and value else None

    async def main() -> tuple[int, int]:
        sup = Supervisor("root", [ChildSpec("p", Command(["sleep", "1000"]))])
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            first = pid_of(sup)
            assert first is not None
            os.kill(first, signal.SIGKILL)
            with anyio.fail_after(10):
                while pid_of(sup) in (None, first):  # noqa: ASYNC110 (a real process)
                    await anyio.sleep(0.005)
            second = pid_of(sup)
            assert second is not None
            await sup.stop()
        return first, second

    first, second = anyio.run(main, backend="asyncio")
    for pid in (first, second):
        assert not psutil.pid_exists(pid)  # gone and reaped: not even a zombie
