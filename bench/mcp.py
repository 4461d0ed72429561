"""Benchmark: MCP through the warm daemon vs the same server spawned directly (SPEC §9).

Three measurements, each beside its baseline in the same run, with the same
SDK client (`mcp.ClientSession` over `mcp.stdio_client`), the rounds of the
two sides interleaved so machine noise hits both:

1. Session ready: spawn, ``initialize``, ``tools/list``. Via the daemon the
   client launches ``bicameral mcp --server X`` against a warm daemon;
   directly it launches X's own command. Budget: median <= 0.25 x direct.
2. ``tools/call`` overhead: the median (p50) of one ``echo`` call, via the
   daemon minus directly, the two sessions open side by side and their calls
   alternating in blocks of 100. Budget: <= 0.5 ms.
3. Memory: N clients x M servers. Without the daemon every client spawns
   every server (N x M processes); with it, M servers, the daemon and N
   bridges. Summed proportional set size (PSS), from /proc.

The server is tests/mcp/servers/testserver.py (an SDK ``MCPServer``).

Run by hand: ``python bench/mcp.py [--rounds N] [--calls N] [--clients N]
[--servers M] [--json]``.
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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and this file's name
# would shadow the SDK's `mcp` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import anyio
import psutil
from mcp import ClientSession, StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = 100  # tools/call samples per side before switching sides
SERVER = ROOT / "tests" / "mcp" / "servers" / "testserver.py"
BICAMERAL = str(Path(sys.executable).with_name("bicameral"))


def _direct(name: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(SERVER), "--name", name])


def _via(home: Path, name: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=BICAMERAL, args=["--home", str(home), "mcp", "--server", name]
    )


@asynccontextmanager
async def stdio_session(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        await client.list_tools()
        yield client


async def _ready_time(params: StdioServerParameters) -> float:
    t0 = time.perf_counter()
    async with stdio_session(params):
        elapsed = time.perf_counter() - t0
    return elapsed


async def _call_times(
    direct: StdioServerParameters, via: StdioServerParameters, calls: int
) -> tuple[list[float], list[float]]:
    """``echo`` round trips, direct and via the daemon, in alternating blocks.

    Blocks rather than single calls: alternating every call keeps both
    servers' processes cold, which is not how a client uses one server.
    """
    async with stdio_session(direct) as one, stdio_session(via) as two:
        for _ in range(50):  # warm up both ends
            await one.call_tool("echo", {"text": "warm"})
            await two.call_tool("echo", {"text": "warm"})
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(max(1, calls // _BLOCK)):
            for client, samples in ((one, times[0]), (two, times[1])):
                for _ in range(_BLOCK):
                    t0 = time.perf_counter()
                    await client.call_tool("echo", {"text": "hello"})
                    samples.append(time.perf_counter() - t0)
    return times


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += psutil.Process(pid).memory_full_info().pss
    return total


def _tree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


async def _memory(home: Path, clients: int, servers: int) -> dict[str, Any]:
    names = [f"s{i}" for i in range(servers)]
    me = os.getpid()
    async with AsyncExitStack() as stack:
        for _ in range(clients):
            for name in names:
                await stack.enter_async_context(stdio_session(_direct(name)))
        direct_pids = [p for p in _tree(me) if p != me]
        direct = _pss(direct_pids)
        direct_count = len(direct_pids)
    descriptor = json.loads((home / "daemon.json").read_text())
    daemon_pid = int(descriptor["pid"])
    async with AsyncExitStack() as stack:
        for _ in range(clients):
            for name in names:
                await stack.enter_async_context(stdio_session(_via(home, name)))
        bridges = [p for p in _tree(me) if p != me]
        daemon_side = _tree(daemon_pid)
        via = _pss(bridges) + _pss(daemon_side)
        via_count = len(bridges) + len(daemon_side)
    return {
        "clients": clients,
        "servers": servers,
        "direct_processes": direct_count,
        "direct_pss_mib": round(direct / 2**20, 1),
        "daemon_processes": via_count,
        "daemon_pss_mib": round(via / 2**20, 1),
    }


def start_daemon(servers: int) -> Path:
    """A daemon in a new short state dir with ``servers`` test MCP servers; its home."""
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcmb"))
    home.chmod(0o700)
    lines = []
    for i in range(servers):
        lines += [
            f"[mcp.servers.s{i}]",
            f"command = {json.dumps(sys.executable)}",
            f"args = {json.dumps([str(SERVER), '--name', f's{i}'])}",
        ]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    start = subprocess.run(
        [BICAMERAL, "--home", str(home), "daemon", "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise SystemExit(f"daemon start failed: {start.stderr.strip()}")
    return home


def stop_daemon(home: Path) -> None:
    """Stop the daemon `start_daemon` made and remove its state dir."""
    subprocess.run(
        [BICAMERAL, "--home", str(home), "daemon", "stop"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


async def main_async(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    ready_direct, ready_via = [], []
    for _ in range(args.rounds):
        ready_direct.append(await _ready_time(_direct("s0")))
        ready_via.append(await _ready_time(_via(home, "s0")))
    call_direct, call_via = await _call_times(_direct("s0"), _via(home, "s0"), args.calls)
    memory = await _memory(home, args.clients, max(1, args.servers))
    ready_d, ready_v = statistics.median(ready_direct), statistics.median(ready_via)
    p50_d, p50_v = statistics.median(call_direct), statistics.median(call_via)
    return {
        "session_ready": {
            "direct_median_s": round(ready_d, 4),
            "via_daemon_median_s": round(ready_v, 4),
            "ratio": round(ready_v / ready_d, 3),
            "budget_ratio": 0.25,
            "ok": ready_v / ready_d <= 0.25,
        },
        "tools_call": {
            "direct_p50_ms": round(p50_d * 1e3, 3),
            "via_daemon_p50_ms": round(p50_v * 1e3, 3),
            "overhead_p50_ms": round((p50_v - p50_d) * 1e3, 3),
            "budget_ms": 0.5,
            "ok": (p50_v - p50_d) * 1e3 <= 0.5,
        },
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="session-ready rounds per side")
    parser.add_argument("--calls", type=int, default=1000, help="tools/call samples per side")
    parser.add_argument("--clients", type=int, default=5, help="N clients (memory)")
    parser.add_argument("--servers", type=int, default=3, help="M servers (memory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    home = start_daemon(max(1, args.servers))
    try:
        result = anyio.run(main_async, args, home, backend="trio")
    finally:
        stop_daemon(home)
    if args.json:
        print(json.dumps(result))
        return
    ready, call, memory = result["session_ready"], result["tools_call"], result["memory"]
    verdict = {True: "ok", False: "OVER BUDGET"}
    print(
        f"session ready: direct {ready['direct_median_s'] * 1e3:.1f} ms, via daemon "
        f"{ready['via_daemon_median_s'] * 1e3:.1f} ms = {ready['ratio']:.3f}x "
        f"(budget <= 0.25x) {verdict[ready['ok']]}"
    )
    print(
        f"tools/call p50: direct {call['direct_p50_ms']:.3f} ms, via daemon "
        f"{call['via_daemon_p50_ms']:.3f} ms, overhead {call['overhead_p50_ms']:.3f} ms "
        f"(budget <= 0.5 ms) {verdict[call['ok']]}"
    )
    print(
        f"memory, {memory['clients']} clients x {memory['servers']} servers: direct "
        f"{memory['direct_processes']} processes {memory['direct_pss_mib']} MiB PSS; via daemon "
        f"{memory['daemon_processes']} processes {memory['daemon_pss_mib']} MiB PSS = "
        f"{memory['daemon_pss_mib'] / memory['direct_pss_mib']:.2f}x (budget <= 0.33x) "
        f"{verdict[memory['daemon_pss_mib'] * 3 <= memory['direct_pss_mib']]}"
    )


if __name__ == "__main__":
    main()
