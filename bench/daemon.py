"""Benchmark: ``bicameral daemon start | status | stop`` wall time (SPEC §9).

Each round starts a daemon in a fresh short state dir, asks its status, and
stops it, timing each command as a whole process (interpreter start
included), exactly as a user at a shell pays for it. The baselines,
``python -c "import typer"`` and ``python -c "import trio"``, are measured in
the same run, interleaved with the rounds, so that machine noise hits both.

Budgets (medians): start <= 0.30 s and <= 1.4 x (typer + trio), with 0, 10
and 30 configured MCP servers (a third never answering ``initialize``, a
third crashing at once, a third real: readiness waits for none of them);
stop <= 0.15 s, <= 0.5 s with 30 servers; status <= 0.10 s.

Run by hand: ``python bench/daemon.py [--rounds N] [--servers 0,10,30] [--json]``.
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


SERVERS = Path(__file__).resolve().parent.parent / "tests" / "mcp" / "servers"


def _config(n: int) -> str:
    """config.toml with `n` servers: a third mute, a third crashing, a third real."""
    lines = []
    for i in range(n):
        kind = ("mute", "crash", "real")[i % 3]
        if kind == "real":
            args = [str(SERVERS / "testserver.py"), "--name", f"s{i}"]
        else:
            args = [str(SERVERS / "hostile.py"), kind]
        lines += [f"[mcp.servers.s{i}]", f"command = {json.dumps(sys.executable)}"]
        lines.append(f"args = {json.dumps(args)}")
    return "\n".join(lines) + "\n"


def _settle(cli: list[str], home: str, env: dict[str, str], n: int) -> None:
    """Wait (untimed) until the real third of the servers is ready: status and
    stop are measured on a running daemon, not during the boot of ten Python
    servers that share the two cores with it. The mute third stays
    `starting`, the crashing third goes on crashing (with backoff)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            [*cli, "--home", home, "daemon", "status", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout
        tree = json.loads(out).get("tree") or {}
        adapters = next((c for c in tree.get("children", []) if c["name"] == "adapters"), {})
        ready = sum(
            (c.get("started_value") or {}).get("state") == "ready"
            for c in adapters.get("children", [])
        )
        if ready >= n // 3:
            time.sleep(0.5)
            return
        time.sleep(0.2)
    raise SystemExit(f"the real servers of {home} did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--servers", default="0,10,30", help="server counts, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    import compileall

    import bicameral

    # Up-to-date bytecode, as an installed package has (see bench/__main__.py).
    compileall.compile_dir(str(Path(bicameral.__file__).parent), quiet=1)
    counts = [int(n) for n in args.servers.split(",")]

    env = dict(os.environ)
    env.pop("BICAMERAL_HOME", None)
    cli = _bicameral()
    samples: dict[str, list[float]] = {"import typer": [], "import trio": []}
    for n in counts:
        for what in ("start", "status", "mcp-ps", "stop"):
            samples[f"{what} {n}"] = []
    for _ in range(args.rounds):
        for n in counts:
            home = tempfile.mkdtemp(prefix="bcb-", dir="/tmp")
            try:
                if n:
                    Path(home, "config.toml").write_text(_config(n))
                t, out = _timed([*cli, "--home", home, "daemon", "start"], env)
                assert json.loads(out)["status"] == "started", out
                samples[f"start {n}"].append(t)
                if n:
                    _settle(cli, home, env, n)
                t, out = _timed([*cli, "--home", home, "daemon", "status"], env)
                assert json.loads(out)["status"] == "running", out
                samples[f"status {n}"].append(t)
                t, out = _timed([*cli, "--home", home, "mcp", "ps"], env)
                assert json.loads(out)["daemon"] == "running", out
                samples[f"mcp-ps {n}"].append(t)
                t, out = _timed([*cli, "--home", home, "daemon", "stop"], env)
                assert json.loads(out)["status"] == "stopped", out
                samples[f"stop {n}"].append(t)
            finally:
                subprocess.run(
                    [*cli, "--home", home, "daemon", "stop"],
                    capture_output=True,
                    env=env,
                    check=False,
                )
                shutil.rmtree(home, ignore_errors=True)
        for name in ("import typer", "import trio"):
            t, _ = _timed([sys.executable, "-c", name], env)
            samples[name].append(t)

    med = {name: statistics.median(values) for name, values in samples.items()}
    baseline = med["import typer"] + med["import trio"]
    # Back-compatible names: the figures with no servers configured.
    for what in ("start", "status", "mcp-ps", "stop"):
        med[what] = med[f"{what} {counts[0]}"]
    checks: dict[str, bool] = {}
    for n in counts:
        checks[f"start ({n} servers) <= 1.4 x (typer + trio)"] = med[f"start {n}"] <= 1.4 * baseline
        limit = 0.5 if n >= 30 else 0.15
        checks[f"stop ({n} servers) <= {limit} s"] = med[f"stop {n}"] <= limit
    checks["status <= 0.10 s"] = med["status"] <= 0.10
    if args.json:
        print(json.dumps({"medians_s": med, "rounds": args.rounds, "checks": checks}))
    else:
        print(f"rounds: {args.rounds} (medians, wall time of the whole command)")
        for name, value in med.items():
            print(f"  {name:<14} {value * 1000:7.1f} ms")
        for n in counts:
            print(
                f"  typer + trio   {baseline * 1000:7.1f} ms   start ({n} servers) / baseline = "
                f"{med[f'start {n}'] / baseline:.2f}x"
            )
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'OVER'}] {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
