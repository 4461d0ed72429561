"""Benchmark: sessions that need instances of their own, and sessions left behind (SPEC §8.4, §9).

* **First call of a new client key on a warm server.** A daemon serves the
  test server (which asks its clients for roots, as server-filesystem does);
  one client is connected, so the server is warm and a spare of its kind is
  ready. Each round, a client with roots nobody used before connects (a new
  key) and the time of its first ``tools/call`` is taken. Baseline: the
  server's own start-up (spawn, ``initialize``, first call), measured in the
  same run. Budget: <= 0.1 s.
* **Server processes after 50 HTTP clients left without DELETE.** 50
  handshake-era clients over ``/mcp/NAME`` (the SDK client with
  ``terminate_on_close=False``, which is what the TypeScript SDK's
  ``close()`` does: no ``DELETE``), 10 at a time, with roots of 5 kinds, call
  a tool and go. The daemon runs with ``[mcp] session_idle`` set short
  (`IDLE` seconds, instead of the default 60) so the bench need not wait
  5 minutes; the row reports the process count before, at the peak, and
  how long until it was back to the steady count (primary and spares),
  bounded by 5 minutes.

Run by hand: ``python bench/sessions.py [--rounds N] [--json]``.
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
from typing import Any

# Run as a script, this file's directory is sys.path[0]: bench/http.py and
# bench/mcp.py would shadow the standard library's and the SDK's packages.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import anyio
import httpx2
import mcp_types as types
import psutil
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
TESTSERVER = str(ROOT / "tests" / "mcp" / "servers" / "testserver.py")
CLI = str(Path(sys.executable).with_name("bicameral"))
#: ``[mcp] session_idle`` for the abandoned-sessions measurement, seconds.
IDLE = 5
#: How long the process count may take to come back (the issue's 5 minutes).
BACK_WITHIN = 300.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BICAMERAL", "PYTEST"))}


def _start(extra: str = "", http: bool = False) -> Path:
    home = Path(tempfile.mkdtemp(prefix="bcs-", dir="/tmp"))
    args = json.dumps([TESTSERVER, "--name", "alpha", "--home-tag", str(home)])
    # A loaded machine may take longer than the default 10 s to start a server.
    text = (
        f"[mcp]\nready_timeout = 120\n{extra}\n"
        f"[mcp.servers.alpha]\ncommand = {json.dumps(sys.executable)}\nargs = {args}\n"
    )
    (home / "config.toml").write_text(text)
    argv = [CLI, "--home", str(home), "daemon", "start", "--wait", "60"]
    extra_args = ["--http", "127.0.0.1:0"] if http else []
    subprocess.run([*argv, *extra_args], check=True, env=_env(), capture_output=True)
    return home


def _stop(home: Path) -> None:
    subprocess.run(
        [CLI, "--home", str(home), "daemon", "stop"], env=_env(), check=False, capture_output=True
    )
    shutil.rmtree(home, ignore_errors=True)


def _ps(home: Path) -> dict[str, Any]:
    out = subprocess.run(
        [CLI, "--home", str(home), "mcp", "ps", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    server: dict[str, Any] = json.loads(out)["servers"][0]
    return server


def _servers(home: Path) -> int:
    """Live server processes started for `home`."""
    count = 0
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if "--home-tag" in cmdline and str(home) in cmdline:
            count += proc.info["status"] != psutil.STATUS_ZOMBIE
    return count


def _until(condition: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {condition}")


def _rooted(path: str) -> Any:
    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///tmp/{path}")])

    return list_roots


async def _direct_startup(rounds: int) -> float:
    params = StdioServerParameters(command=sys.executable, args=[TESTSERVER, "--name", "alpha"])
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        async with Client(params, mode="legacy") as client:
            await client.call_tool("echo", {"text": "x"})
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def _new_key_first_calls(rounds: int) -> list[float]:
    home = _start()
    try:
        params = StdioServerParameters(
            command=CLI, args=["--home", str(home), "mcp", "--server", "alpha"], env=_env()
        )
        times = []
        async with Client(params, mode="legacy", list_roots_callback=_rooted("warm")) as warm:
            await warm.call_tool("echo", {"text": "warm"})
            for n in range(rounds):
                _until(
                    lambda: any(
                        i["spare"] and i["state"] == "ready" for i in _ps(home)["instances"]
                    ),
                    60,
                )
                async with Client(
                    params, mode="legacy", list_roots_callback=_rooted(f"k{n}")
                ) as new:
                    began = time.perf_counter()
                    await new.call_tool("echo", {"text": "first"})
                    times.append(time.perf_counter() - began)
        return times
    finally:
        _stop(home)


async def _abandoned(clients: int) -> dict[str, Any]:
    home = _start(f"session_idle = {IDLE}", http=True)
    try:
        descriptor = json.loads((home / "daemon.json").read_text())
        url = f"{descriptor['http_url']}/mcp/alpha"
        auth = {"Authorization": "Bearer " + (home / "http.token").read_text().strip()}
        _until(lambda: _ps(home)["state"] == "ready", 60)
        steady = _servers(home)
        peak = steady

        async def one(n: int) -> None:
            async with httpx2.AsyncClient(headers=auth, timeout=60) as http:
                transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
                async with Client(
                    transport,
                    mode="legacy",
                    list_roots_callback=_rooted(f"r{n % 5 if n >= 0 else 'warm'}"),
                ) as client:  # type: ignore[arg-type]
                    await client.call_tool("echo", {"text": "hi"})

        await one(-1)  # the server is warm and known to ask for roots
        for batch in range(0, clients, 10):
            async with anyio.create_task_group() as tg:
                for n in range(batch, min(clients, batch + 10)):
                    tg.start_soon(one, n)
            peak = max(peak, _servers(home))
        left = time.monotonic()
        spares = 2  # at most SPARES kept warm per server
        deadline = left + BACK_WITHIN
        count = _servers(home)
        while time.monotonic() < deadline and count > steady + spares:
            await anyio.sleep(1.0)
            count = _servers(home)
        return {
            "clients": clients,
            "session_idle_s": IDLE,
            "steady": steady,
            "peak": peak,
            "after": count,
            "back_after_s": round(time.monotonic() - left, 1),
            "ok": count <= steady + spares,
        }
    finally:
        _stop(home)


async def _main(rounds: int, clients: int) -> dict[str, Any]:
    direct = await _direct_startup(3)
    firsts = await _new_key_first_calls(rounds)
    abandoned = await _abandoned(clients)
    first = statistics.median(firsts)
    return {
        "new_key": {"first_call_median_s": first, "direct_startup_s": direct, "ok": first <= 0.1},
        "abandoned": abandoned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = anyio.run(_main, args.rounds, args.clients)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    sys.exit(0 if result["new_key"]["ok"] and result["abandoned"]["ok"] else 1)


if __name__ == "__main__":
    main()
