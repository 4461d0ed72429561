"""Supervisor benchmarks: crash-to-restarted latency, and 10,000 children.

Run by hand:  .venv/bin/python bench/supervisor.py [--quick]

Prints medians over several repeats. The figures move with the machine's
load (two cores shared with anything else running): compare runs on a quiet
machine, and look at `uptime` beside them. Budgets (SPEC §9): crash-to-restarted
p50 <= 100 µs with no backoff; 10,000 worker children started in <= 0.5 s
with <= 8 KiB each.

Crash-to-restarted is the time from a child raising to its target running
again, in the same process, with the default `Backoff()` (restart at once).
The supervisor's logger is silenced for the headline figure (a crash logs a
traceback, and what a handler does with it is not the supervisor's cost);
a second figure sends it to a `NullHandler`, so the log record is built.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import logging
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import trio
import trio.testing

from bicameral.supervisor import ChildSpec, Supervisor

LOGGER = logging.getLogger("bicameral.supervisor")


class _Crash(Exception):
    pass


def crash_latency(crashes: int, backend: str = "trio") -> list[float]:
    """Seconds from `raise` in a child to the same child's target running again."""
    samples: list[float] = []
    crashed_at = [0.0]
    done: list[anyio.Event] = []  # made inside the event loop

    async def worker(*, task_status: Any) -> None:
        now = time.perf_counter()
        if crashed_at[0]:
            samples.append(now - crashed_at[0])
        task_status.started()
        if len(samples) >= crashes:
            done[0].set()
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()  # a real child does some work first
        crashed_at[0] = time.perf_counter()
        raise _Crash

    async def main() -> None:
        done.append(anyio.Event())
        sup = Supervisor("bench", [ChildSpec("w", worker)], max_restarts=10**9, max_seconds=1.0)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await done[0].wait()
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    return samples


async def _idle() -> None:
    await anyio.sleep_forever()


async def _idle_ready(*, task_status: Any) -> None:
    task_status.started()
    await anyio.sleep_forever()


def start_many(
    n: int, target: Callable[..., Any], measure_memory: bool
) -> tuple[float, float, float]:
    """Seconds for `nursery.start(sup.run)`, seconds until every child has run
    to its first blocking await, and bytes per child (its spec included).

    The first figure is the contract's "started": a target without
    ``task_status`` counts as started once spawned, so its first step runs
    after `nursery.start` returns; the second figure includes that step.
    """
    result: list[float] = []

    async def main() -> None:
        gc.collect()
        if measure_memory:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if measure_memory else 0
        specs = [ChildSpec(f"w{i}", target) for i in range(n)]
        sup = Supervisor("bench", specs)
        async with trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            await nursery.start(sup.run)
            elapsed = time.perf_counter() - t0
            # Let every child reach its first await, so its frame is counted.
            await trio.testing.wait_all_tasks_blocked()
            settled = time.perf_counter() - t0
            if measure_memory:
                after = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                result.extend([elapsed, settled, (after - before) / n])
            else:
                result.extend([elapsed, settled, 0.0])
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result[0], result[1], result[2]


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def headline(repeats: int, crashes: int) -> dict[str, float]:
    """The figures SPEC §9 budgets, as medians: Trio, supervisor logger silenced."""
    LOGGER.setLevel(logging.CRITICAL + 1)
    p50s, p99s = [], []
    for _ in range(repeats):
        s = crash_latency(crashes, "trio")
        p50s.append(pct(s, 0.50))
        p99s.append(pct(s, 0.99))
    n = 10_000
    plain = [start_many(n, _idle, False)[0] for _ in range(repeats)]
    ready = [start_many(n, _idle_ready, False)[0] for _ in range(repeats)]
    mems = [start_many(n, _idle, True)[2] for _ in range(max(1, repeats // 2))]
    return {
        "crash_p50_us": statistics.median(p50s) * 1e6,
        "crash_p99_us": statistics.median(p99s) * 1e6,
        "start_10k_s": statistics.median(plain),
        "start_10k_ready_s": statistics.median(ready),
        "kib_per_child": statistics.median(mems) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", action="store_true", help="print the headline medians as JSON")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    crashes = 5_000 if args.quick else 20_000
    if args.json:
        print(json.dumps(headline(repeats, crashes)))
        return

    anyio_version = importlib.metadata.version("anyio")
    print(f"python {sys.version.split()[0]}, trio {trio.__version__}, anyio {anyio_version}")

    for label in ("logger silenced", "NullHandler"):
        if label == "logger silenced":
            LOGGER.setLevel(logging.CRITICAL + 1)
        else:
            LOGGER.setLevel(logging.DEBUG)
            LOGGER.addHandler(logging.NullHandler())
            LOGGER.propagate = False
        for backend in ("trio", "asyncio"):
            p50s, p99s = [], []
            for _ in range(repeats):
                s = crash_latency(crashes, backend)
                p50s.append(pct(s, 0.50))
                p99s.append(pct(s, 0.99))
            print(
                f"crash-to-restarted [{backend:7}, {label}]: "
                f"p50 {statistics.median(p50s) * 1e6:6.1f} µs   "
                f"p99 {statistics.median(p99s) * 1e6:6.1f} µs   (budget p50 <= 100 µs)"
            )
    LOGGER.setLevel(logging.CRITICAL + 1)

    n = 10_000
    for label, target in (("no task_status", _idle), ("task_status.started()", _idle_ready)):
        runs = [start_many(n, target, False) for _ in range(repeats)]
        mems = [start_many(n, target, True)[2] for _ in range(max(1, repeats // 2))]
        print(
            f"{n:,} workers [{label}]: started in {statistics.median(r[0] for r in runs):.3f} s "
            f"(budget 0.5 s; all at their first await: "
            f"{statistics.median(r[1] for r in runs):.3f} s), "
            f"{statistics.median(mems) / 1024:.2f} KiB each (budget 8 KiB)"
        )


if __name__ == "__main__":
    main()
