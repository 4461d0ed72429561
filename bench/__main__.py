"""Every performance budget of SPEC §9 in one run: ``python -m bench [--quick] [--json PATH]``.

Each measurement runs in its own process (``bench/<area>.py --json``) so one
area's imports, threads or garbage cannot slow another's, and each is taken
beside its baseline *in that same process run*, interleaved where the area
allows it, so that the load of the machine hits both sides alike. Nothing
here is hard-coded but the budgets.

The table shows the medians, the baseline measured in the same run, the
budget and a verdict. ``--json PATH`` writes the same rows as JSON.
This suite is run by hand, never by CI: two shared cores make timings noisy,
so the tests assert behaviour and this measures speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@dataclass
class Row:
    what: str
    measured: str
    baseline: str
    budget: str
    ok: bool | None  # None: reported, not budgeted


def _sub(script: str, *args: str) -> Any:
    """Run ``bench/<script> --json ARGS`` and return its JSON."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--json", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench/{script} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _daemon(quick: bool) -> list[Row]:
    res = _sub("daemon.py", "--rounds", "5" if quick else "15")
    med = res["medians_s"]
    base = med["import typer"] + med["import trio"]
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    counts = sorted({int(k.split()[1]) for k in med if k.startswith("start ")})
    rows = []
    for n in counts:
        start = med[f"start {n}"]
        rows.append(
            Row(
                f"daemon start until ready, {n} servers",
                ms(start),
                f"typer+trio imports {ms(base)} ({start / base:.2f}x)",
                "<= 1.4x (about 300 ms)",
                # The machines vary ~2x from day to day: where a budget has an
                # absolute figure and a ratio, the ratio to the baseline decides.
                start <= 1.4 * base,
            )
        )
    for n in counts:
        limit = 0.5 if n >= 30 else 0.15
        rows.append(
            Row(
                f"daemon stop, {n} servers",
                ms(med[f"stop {n}"]),
                "predecessor 10000 ms",
                f"<= {limit * 1000:.0f} ms",
                med[f"stop {n}"] <= limit,
            )
        )
    rows.append(
        Row(
            "daemon status (running)",
            ms(med["status"]),
            f"import typer {ms(med['import typer'])}",
            "<= 100 ms",
            med["status"] <= 0.10,
        )
    )
    last = counts[-1]
    rows.append(
        Row(
            f"mcp ps ({last} servers)",
            ms(med[f"mcp-ps {last}"]),
            f"daemon status {ms(med[f'status {last}'])}",
            "-",
            None,
        )
    )
    return rows


def _supervisor(quick: bool) -> list[Row]:
    res = _sub("supervisor.py", *(["--quick"] if quick else []))
    return [
        Row(
            "crash-to-restarted, in-process, no backoff",
            f"p50 {res['crash_p50_us']:.1f} µs, p99 {res['crash_p99_us']:.1f} µs",
            "-",
            "p50 <= 100 µs",
            res["crash_p50_us"] <= 100,
        ),
        Row(
            "10,000 worker children started",
            f"{res['start_10k_s']:.3f} s, {res['kib_per_child']:.2f} KiB each",
            f"with task_status.started(): {res['start_10k_ready_s']:.3f} s",
            "<= 0.5 s, <= 8 KiB each",
            res["start_10k_s"] <= 0.5 and res["kib_per_child"] <= 8,
        ),
    ]


def _protocol(quick: bool) -> list[Row]:
    args = ["--rounds", "3", "--duration", "1"] if quick else ["--rounds", "5"]
    res = _sub("protocol.py", *args)
    ours, base = res["bicameral"], res["asyncio"]
    ratio = ours["rps"] / base["rps"]
    return [
        Row(
            "system.version via the daemon, 1 client",
            f"p50 {ours['p50_us']:.1f} µs, p99 {ours['p99_us']:.1f} µs",
            f"asyncio p50 {base['p50_us']:.1f} µs",
            "p50 <= 80 µs",
            ours["p50_us"] <= 80,
        ),
        Row(
            "system.version via the daemon, 8 clients",
            f"{ours['rps']:.0f} req/s ({ours['cpu_us']:.1f} µs CPU/req)",
            f"asyncio {base['rps']:.0f} req/s ({base['cpu_us']:.1f} µs CPU/req), {ratio:.2f}x",
            ">= 1.0x",
            ratio >= 1.0,
        ),
    ]


def _mcp(quick: bool) -> list[Row]:
    args = ["--rounds", "5", "--calls", "300"] if quick else []
    res = _sub("mcp.py", *args)
    ready, call, mem = res["session_ready"], res["tools_call"], res["memory"]
    return [
        Row(
            "MCP session ready via warm daemon",
            f"{ready['via_daemon_median_s'] * 1000:.0f} ms ({ready['ratio']:.3f}x)",
            f"spawning the server directly {ready['direct_median_s'] * 1000:.0f} ms",
            "<= 0.25x",
            ready["ok"],
        ),
        Row(
            "MCP tools/call overhead via daemon",
            f"p50 +{call['overhead_p50_ms']:.3f} ms ({call['via_daemon_p50_ms']:.3f} ms)",
            f"direct p50 {call['direct_p50_ms']:.3f} ms",
            "<= 0.5 ms",
            call["ok"],
        ),
        Row(
            f"memory, {mem['clients']} clients x {mem['servers']} servers",
            f"{mem['daemon_processes']} processes, {mem['daemon_pss_mib']} MiB PSS",
            f"direct: {mem['direct_processes']} processes, {mem['direct_pss_mib']} MiB PSS",
            "<= 1/3 of direct",
            mem["daemon_pss_mib"] * 3 <= mem["direct_pss_mib"],
        ),
    ]


def _rss(servers: int) -> float:
    """RSS (MiB) of an idle daemon with ``servers`` test MCP servers configured."""
    import psutil

    from bench.mcp import start_daemon, stop_daemon

    home = start_daemon(servers)
    try:
        pid = json.loads((home / "daemon.json").read_text())["pid"]
        time.sleep(1.0)  # idle RSS: let start-up garbage settle
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    finally:
        stop_daemon(home)


def _memory() -> list[Row]:
    idle, five = _rss(0), _rss(5)
    return [
        Row(
            "daemon RSS, idle / with 5 upstream servers",
            f"{idle:.1f} MiB / {five:.1f} MiB",
            "-",
            "-",
            None,
        )
    ]


def _pytest_wall(target: str) -> tuple[int, float, bool]:
    """Run pytest on ``target`` as a user would: (tests passed, wall seconds, all passed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    wall = time.perf_counter() - t0
    found = re.search(r"(\d+) passed", proc.stdout)
    return (int(found.group(1)) if found else 0), wall, proc.returncode == 0


def _lifecycle() -> list[Row]:
    # The budget is for lifecycle tests: each starts the real daemon as a
    # subprocess. The whole tests/daemon (with its unit tests) is shown too.
    passed, wall, ok = _pytest_wall("tests/daemon/test_lifecycle.py")
    all_passed, all_wall, all_ok = _pytest_wall("tests/daemon")
    return [
        Row(
            "daemon lifecycle tests (real daemon subprocesses)",
            f"{passed} passed in {wall:.1f} s",
            "predecessor: 9 tests in 72 s",
            ">= 20 tests in <= 20 s",
            passed >= 20 and wall <= 20 and ok,
        ),
        Row(
            "all of tests/daemon (lifecycle + units)",
            f"{all_passed} passed in {all_wall:.1f} s",
            "-",
            "-",
            None if all_ok else False,
        ),
    ]


def _isolation(quick: bool) -> list[Row]:
    res = _sub("isolation.py", "--calls", "500" if quick else "2000")
    return [
        Row(
            "bystander system.version beside a flooding server and a urandom bridge",
            f"p50 {res['loaded_p50_ms']:.3f} ms, p99 {res['loaded_p99_ms']:.3f} ms",
            f"idle daemon p50 {res['idle_p50_ms']:.3f} ms, p99 {res['idle_p99_ms']:.3f} ms",
            "p99 <= 10 ms",
            res["ok"],
        )
    ]


def _http(quick: bool) -> list[Row]:
    res = _sub("http.py", "--calls", "300" if quick else "1000")
    p50, over, mem = res["p50_ms"], res["overhead_ms"], res["memory_mib"]
    peers = [f for f in over if not f.startswith(("bicameral", "direct"))]
    peer_text = ", ".join(f"{p} +{over[p]:.3f}" for p in peers) or "none ran"
    ours = over.get("bicameral http")
    listener = res.get("listener_ms")
    rows = [
        Row(
            "MCP tools/call overhead via the HTTP listener",
            f"p50 +{listener:.3f} ms ({p50['bicameral http']:.3f} ms)"
            if listener is not None
            else "-",
            f"the server's own streamable HTTP {p50.get('direct http', float('nan')):.3f} ms "
            f"(same client); peers over stdio-direct: {peer_text}",
            "<= 1.0 ms and below every HTTP peer",
            res["http_ok"],
        ),
        Row(
            "MCP tools/call via the HTTP listener, over a stdio call",
            f"p50 +{ours:.3f} ms" if ours is not None else "-",
            f"direct (stdio) {p50['direct']:.3f} ms; the server's own HTTP "
            f"+{over.get('direct http', float('nan')):.3f} ms",
            "-",
            None,
        ),
        Row(
            "MCP tools/call: bicameral (both forms) below every peer",
            f"bridge +{over.get('bicameral bridge', float('nan')):.3f} ms, "
            f"http +{ours if ours is not None else float('nan'):.3f} ms",
            peer_text,
            "lowest",
            res["lowest"],
        ),
    ]
    clients, servers = res["clients"], res["servers"]
    rows.append(
        Row(
            f"memory, {clients} clients x {servers} servers, per front",
            ", ".join(f"{k} {v} MiB" for k, v in mem.items() if k != "direct" and v is not None),
            f"direct {mem.get('direct')} MiB",
            "-",
            None,
        )
    )
    for peer, why in res["unavailable"].items():
        rows.append(Row(f"peer {peer}", "unavailable", why[:80], "-", None))
    return rows


def _search(quick: bool) -> list[Row]:
    res = _sub("search.py", "--rounds", "5" if quick else "20")
    shares = ", ".join(
        f"{s['search_bytes']} B of {s['full_bytes']} B at {s['tools']} tools "
        f"({100 * s['share']:.1f}%)"
        for s in res["list"]
    )
    return [
        Row(
            f"search recall@5, {res['queries']} requests over {res['real_tools']} tools "
            f"of {res['servers']} real servers",
            f"{res['recall_at_5']:.3f} (held-out {res['holdout_recall_at_5']:.3f})",
            f"no synonyms {res['no_synonyms_recall_at_5']:.3f}; among {res['mixed_tools']} "
            f"tools {res['mixed_recall_at_5']:.3f}",
            ">= 0.9",
            res["recall_at_5"] >= 0.9,
        ),
        Row(
            "search mode tools/list, of the full catalog's bytes",
            shares,
            "the full catalog",
            "< 10% at 100+ tools",
            all(s["share"] < 0.1 for s in res["list"]),
        ),
        Row(
            f"bicameral__search_tools with {res['search_tools']} tools",
            f"p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms",
            f"index built in {res['build_ms']:.0f} ms",
            "p50 < 5 ms",
            res["p50_ms"] < 5.0,
        ),
    ]


def _sessions(quick: bool) -> list[Row]:
    res = _sub("sessions.py", *(["--rounds", "3", "--clients", "20"] if quick else []))
    key, gone = res["new_key"], res["abandoned"]
    return [
        Row(
            "first call of a new client key on a warm server",
            f"{key['first_call_median_s'] * 1000:.0f} ms",
            f"the server's own start-up {key['direct_startup_s'] * 1000:.0f} ms",
            "<= 100 ms",
            key["ok"],
        ),
        Row(
            f"server processes after {gone['clients']} HTTP clients left without DELETE "
            f"(session_idle {gone['session_idle_s']} s for the bench; default 60 s)",
            f"{gone['after']} (peak {gone['peak']}), back after {gone['back_after_s']:.0f} s",
            f"steady {gone['steady']} (+ at most 2 spares)",
            "back within 5 min",
            gone["ok"],
        ),
    ]


AREAS = {
    "daemon": _daemon,
    "supervisor": _supervisor,
    "protocol": _protocol,
    "mcp": _mcp,
    "isolation": _isolation,
    "http": _http,
    "search": _search,
    "sessions": _sessions,
}


def _compile_bytecode() -> None:
    """Bring bicameral's bytecode up to date, as an installed package's is.

    ``pip install`` compiles a package's modules; a source checkout with
    ``PYTHONDONTWRITEBYTECODE`` set (some sandboxes set it) would otherwise
    recompile every edited module in every process the benches start, and
    the start-up rows would time the compiler.
    """
    import compileall
    from pathlib import Path

    import bicameral

    compileall.compile_dir(str(Path(bicameral.__file__).parent), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--only", action="append", choices=[*AREAS, "memory", "lifecycle"], help="areas to run"
    )
    args = parser.parse_args()
    _compile_bytecode()
    chosen = args.only or [*AREAS, "memory", "lifecycle"]
    rows: list[Row] = []
    for area in chosen:
        print(f"... {area}", file=sys.stderr, flush=True)
        if area == "memory":
            rows += _memory()
        elif area == "lifecycle":
            rows += _lifecycle()
        else:
            rows += AREAS[area](args.quick)

    widths = [max(len(getattr(r, f)) for r in rows) for f in ("what", "measured", "baseline")]
    header = ("what", "median", "baseline (same run)")
    print(f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  budget")
    for r in rows:
        mark = {True: "ok", False: "MISS", None: ""}[r.ok]
        print(
            f"{r.what:<{widths[0]}}  {r.measured:<{widths[1]}}  {r.baseline:<{widths[2]}}  "
            f"{r.budget} {mark}".rstrip()
        )
    load = os.getloadavg()
    print(f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
