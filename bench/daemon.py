"""Benchmark: ``bicameral daemon start | status | stop`` wall time (SPEC §9).

Each round starts a daemon in a fresh short state dir, asks its status, and
stops it, timing each command as a whole process (interpreter start
included), exactly as a user at a shell pays for it. The baselines,
``python -c "import typer"`` and ``python -c "import trio"``, are measured in
the same run, interleaved with the rounds, so that machine noise hits both.

Budgets (medians): start <= 0.30 s and <= 1.4 x (typer + trio);
stop <= 0.15 s; status <= 0.10 s.

Run by hand: ``python bench/daemon.py [--rounds N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _bicameral() -> list[str]:
    script = Path(sys.executable).with_name("bicameral")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bicameral"]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()

    env = dict(os.environ)
    env.pop("BICAMERAL_HOME", None)
    cli = _bicameral()
    samples: dict[str, list[float]] = {
        "start": [],
        "status": [],
        "stop": [],
        "import typer": [],
        "import trio": [],
    }
    for _ in range(args.rounds):
        home = tempfile.mkdtemp(prefix="bcb-", dir="/tmp")
        try:
            t, out = _timed([*cli, "--home", home, "daemon", "start"], env)
            assert json.loads(out)["status"] == "started", out
            samples["start"].append(t)
            t, out = _timed([*cli, "--home", home, "daemon", "status"], env)
            assert json.loads(out)["status"] == "running", out
            samples["status"].append(t)
            t, out = _timed([*cli, "--home", home, "daemon", "stop"], env)
            assert json.loads(out)["status"] == "stopped", out
            samples["stop"].append(t)
        finally:
            subprocess.run(
                [*cli, "--home", home, "daemon", "stop"], capture_output=True, env=env, check=False
            )
            shutil.rmtree(home, ignore_errors=True)
        for name in ("import typer", "import trio"):
            t, _ = _timed([sys.executable, "-c", name], env)
            samples[name].append(t)

    med = {name: statistics.median(values) for name, values in samples.items()}
    baseline = med["import typer"] + med["import trio"]
    checks = {
        "start <= 0.30 s": med["start"] <= 0.30,
        "start <= 1.4 x (typer + trio)": med["start"] <= 1.4 * baseline,
        "status <= 0.10 s": med["status"] <= 0.10,
        "stop <= 0.15 s": med["stop"] <= 0.15,
    }
    if args.json:
        print(json.dumps({"medians_s": med, "rounds": args.rounds, "checks": checks}))
    else:
        print(f"rounds: {args.rounds} (medians, wall time of the whole command)")
        for name, value in med.items():
            print(f"  {name:<14} {value * 1000:7.1f} ms")
        print(
            f"  typer + trio   {baseline * 1000:7.1f} ms   start / baseline = "
            f"{med['start'] / baseline:.2f}x"
        )
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'OVER'}] {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
