"""Benchmark: a bystander's ``system.version`` while hostile peers load the daemon (SPEC §9).

Two daemons, one after the other, each in a fresh short state dir with one
well-behaved MCP server: the *idle* one (the baseline) and the *loaded* one,
which also runs a server flooding ``notifications/message`` without pause
and serves a bridge whose client feeds it ``/dev/urandom``. A bystander on
the daemon's socket sends ``system.version`` one at a time; the p50 and p99
of its round trips are compared. Budget: loaded p99 <= 10 ms.

Run by hand: ``python bench/isolation.py [--calls N] [--json]``.
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

from bicameral.protocol import BlockingClient

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ROOT / "tests" / "mcp" / "servers"
CLI = str(Path(sys.executable).with_name("bicameral"))


def _config(hostile: bool) -> str:
    text = (
        "[mcp.servers.good]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = {json.dumps([str(SERVERS / 'testserver.py'), '--name', 'good'])}\n"
    )
    if hostile:
        text += (
            "[mcp.servers.flood]\n"
            f"command = {json.dumps(sys.executable)}\n"
            f"args = {json.dumps([str(SERVERS / 'hostile.py'), 'flood'])}\n"
        )
    return text


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def _measure(hostile: bool, calls: int) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="bci-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL_")}
    bridge = None
    try:
        (home / "config.toml").write_text(_config(hostile))
        out = subprocess.run(
            [CLI, "--home", str(home), "daemon", "start"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        socket_path = json.loads(out.stdout)["socket_path"]
        time.sleep(2.0)  # the servers are up (and the flood is flowing)
        if hostile:
            with open("/dev/urandom", "rb") as noise:
                bridge = subprocess.Popen(
                    [CLI, "--home", str(home), "mcp", "--server", "good"],
                    stdin=noise,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            time.sleep(1.0)
        samples = []
        with BlockingClient.connect_unix(socket_path, timeout=30) as client:
            for _ in range(calls):
                t0 = time.perf_counter()
                client.call("system.version", timeout=30)
                samples.append(time.perf_counter() - t0)
        return _percentiles(samples)
    finally:
        if bridge is not None:
            bridge.kill()
            bridge.wait()
        subprocess.run(
            [CLI, "--home", str(home), "daemon", "stop"], capture_output=True, env=env, check=False
        )
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    idle = _measure(False, args.calls)
    loaded = _measure(True, args.calls)
    result = {
        "idle_p50_ms": idle[0] * 1000,
        "idle_p99_ms": idle[1] * 1000,
        "loaded_p50_ms": loaded[0] * 1000,
        "loaded_p99_ms": loaded[1] * 1000,
        "calls": args.calls,
    }
    ok = result["loaded_p99_ms"] <= 10.0
    if args.json:
        print(json.dumps({**result, "ok": ok}))
    else:
        print(
            f"bystander system.version, {args.calls} calls: idle p50 {result['idle_p50_ms']:.3f} "
            f"ms p99 {result['idle_p99_ms']:.3f} ms; loaded (flooding server + urandom bridge) "
            f"p50 {result['loaded_p50_ms']:.3f} ms p99 {result['loaded_p99_ms']:.3f} ms "
            f"[{'ok' if ok else 'OVER'}: p99 <= 10 ms]"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
