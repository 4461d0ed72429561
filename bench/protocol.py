"""Benchmark: ``system.version`` round trips through bicameral.protocol (SPEC §9).

Measured in the same run, alternating, against a plain stdlib asyncio
newline-JSON-RPC server (``bench/_asyncio_jsonrpc.py``):

- latency: one `BlockingClient` process, p50 and p99 of ``call`` after warm-up;
- throughput: 8 client processes each calling in a loop for a fixed time.

Each figure is the median over ``--rounds`` rounds. Budgets: p50 <= 80 us,
throughput >= 1.0x the baseline.

Run by hand: ``.venv/bin/python bench/protocol.py [--rounds N]``.

To measure another server (the real daemon), call `measure(socket_path)`:
it needs only a Unix socket answering ``system.version``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bicameral.protocol import BlockingClient  # noqa: E402

P50_BUDGET_US = 80.0
THROUGHPUT_BUDGET = 1.0


# -- what gets measured ---------------------------------------------------------


def latency(socket_path: str, *, requests: int = 20_000, warmup: int = 2_000) -> dict[str, float]:
    """p50/p99 in microseconds of ``system.version`` from one blocking client."""
    with BlockingClient.connect_unix(socket_path) as client:
        for _ in range(warmup):
            client.call("system.version")
        samples = []
        clock = time.perf_counter_ns
        for _ in range(requests):
            start = clock()
            client.call("system.version")
            samples.append(clock() - start)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def _client_loop(socket_path: str, duration: float, start_at: float, out: Any) -> None:
    with BlockingClient.connect_unix(socket_path) as client:
        client.call("system.version")
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = time.perf_counter() + duration
        count = 0
        while time.perf_counter() < deadline:
            client.call("system.version")
            count += 1
    out.put(count)


def throughput(socket_path: str, *, clients: int = 8, duration: float = 2.0) -> float:
    """Requests per second answered to ``clients`` processes calling in a loop."""
    ctx: Any = multiprocessing.get_context("fork" if sys.platform != "darwin" else "spawn")
    results = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [
        ctx.Process(target=_client_loop, args=(socket_path, duration, start_at, results))
        for _ in range(clients)
    ]
    for proc in procs:
        proc.start()
    total: int = sum(results.get(timeout=duration + 30) for _ in procs)
    for proc in procs:
        proc.join()
    return total / duration


def measure(
    socket_path: str,
    *,
    requests: int = 20_000,
    clients: int = 8,
    duration: float = 2.0,
    server_pid: int | None = None,
) -> dict[str, float]:
    """One round against the server at ``socket_path``: p50_us, p99_us, rps.

    With ``server_pid``, also ``cpu_us``: the server's CPU time (user + system)
    per request during the throughput run, which other load on the machine
    disturbs much less than requests per second.
    """
    import psutil  # type: ignore[import-untyped]

    figures = latency(socket_path, requests=requests)
    server = psutil.Process(server_pid) if server_pid is not None else None
    before = sum(server.cpu_times()[:2]) if server else 0.0
    figures["rps"] = throughput(socket_path, clients=clients, duration=duration)
    if server is not None:
        used = sum(server.cpu_times()[:2]) - before
        figures["cpu_us"] = used / (figures["rps"] * duration) * 1e6
    return figures


# -- the servers ----------------------------------------------------------------


def serve_bicameral(path: str) -> None:
    """A server process: bicameral.protocol with ``system.version``, as the daemon has it."""
    import trio

    from bicameral.protocol import Dispatcher, serve_unix

    dispatcher = Dispatcher()

    @dispatcher.method("system.version")
    async def version(params: Any, conn: Any) -> Any:
        return {"daemon_version": "0.1.0", "protocol_version": "1"}

    trio.run(serve_unix, path, dispatcher)


def _start(argv: list[str], path: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return proc
        except OSError:
            time.sleep(0.02)
        finally:
            probe.close()
    proc.kill()
    raise RuntimeError(f"{argv} did not start listening on {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--target",
        choices=("daemon", "server"),
        default="daemon",
        help="the real daemon (default), or a bare bicameral.protocol server",
    )
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(dir="/tmp", prefix="bcb")
    ours, base = os.path.join(tmp, "b.sock"), os.path.join(tmp, "a.sock")
    servers = [_start([sys.executable, str(ROOT / "bench" / "_asyncio_jsonrpc.py"), base], base)]
    cli = [sys.executable, "-m", "bicameral", "--home", tmp, "daemon"]
    if args.target == "daemon":
        started = subprocess.run([*cli, "start"], capture_output=True, text=True, check=True)
        info = json.loads(started.stdout)
        ours, our_pid = info["socket_path"], info["pid"]
    else:
        servers.append(_start([sys.executable, __file__, "--serve", ours], ours))
        our_pid = servers[1].pid
    results: dict[str, list[dict[str, float]]] = {"bicameral": [], "asyncio": []}
    targets = (("bicameral", ours, our_pid), ("asyncio", base, servers[0].pid))
    try:
        for _ in range(args.rounds):
            for name, path, pid in targets:
                results[name].append(
                    measure(
                        path,
                        requests=args.requests,
                        clients=args.clients,
                        duration=args.duration,
                        server_pid=pid,
                    )
                )
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()
        if args.target == "daemon":
            subprocess.run([*cli, "stop"], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    if args.json:
        keys = ("p50_us", "p99_us", "rps", "cpu_us")
        print(json.dumps({n: {k: med(n, k) for k in keys} for n in ("bicameral", "asyncio")}))
        return

    rows = [
        ("1 client p50 (us)", "p50_us", "{:.1f}", f"<= {P50_BUDGET_US:.0f}"),
        ("1 client p99 (us)", "p99_us", "{:.1f}", ""),
        (f"{args.clients} clients (req/s)", "rps", "{:.0f}", f">= {THROUGHPUT_BUDGET:.1f}x"),
        (f"{args.clients} clients server CPU (us/req)", "cpu_us", "{:.1f}", ""),
    ]
    print(f"system.version ({args.target}), medians of {args.rounds} rounds")
    print(f"{'':36}{'bicameral':>11}{'asyncio':>11}{'budget':>10}")
    for label, key, fmt, budget in rows:
        ours_v, base_v = med("bicameral", key), med("asyncio", key)
        verdict = ""
        if key == "p50_us":
            verdict = "ok" if ours_v <= P50_BUDGET_US else "OVER"
        elif key == "rps":
            ratio = ours_v / base_v
            verdict = f"{ratio:.2f}x {'ok' if ratio >= THROUGHPUT_BUDGET else 'UNDER'}"
        print(f"{label:36}{fmt.format(ours_v):>11}{fmt.format(base_v):>11}{budget:>10}  {verdict}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_bicameral(sys.argv[2])
    else:
        main()
