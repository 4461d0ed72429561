"""Soak run: minutes of mixed load on a real daemon, with upstream crashes and reloads.

Run by hand, never by CI::

    python bench/soak.py [--minutes 10] [--rpc-clients 4] [--mcp-clients 3]
                         [--servers 3] [--kill-every 20] [--reload-every 45] [--json PATH]

What it does, against a daemon in a fresh short state dir under /tmp, with
``--servers`` copies of the MCP test server (``tests/mcp/servers/testserver.py``)
configured:

- ``--rpc-clients`` threads on their own connections call ``system.version``,
  ``system.health`` and ``adapters.list`` in a loop (``BlockingClient``),
  ``--rpc-pause`` seconds apart (0: as fast as they can);
- ``--mcp-clients`` threads each run a ``bicameral mcp`` bridge (the real
  stdio bridge, as an MCP client launches it), initialize, and call
  ``<server>__echo`` round-robin over the servers, checking each answer;
- a chaos thread SIGKILLs a random upstream server every ``--kill-every``
  seconds and asks for a reload (alternately ``bicameral daemon reload`` and
  SIGHUP) every ``--reload-every`` seconds.

Every request is accounted for: *answered* (a result; for MCP calls, the
right echo), *errors* by kind (an error answer: e.g. the call in flight when
its upstream was killed), or *lost* (no answer within ``--timeout`` seconds,
or the connection dropped with the request outstanding). The daemon's RSS
and open file descriptors are sampled before the load, after a warm-up
(clients connected), at the end under load, and once every client has gone.

Loopback only (a Unix socket and pipes); every loop is bounded by the run's
deadline. Exit status 0 when nothing was lost and the daemon survived.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_SERVER = ROOT / "tests" / "mcp" / "servers" / "testserver.py"
sys.path.insert(0, str(ROOT))

from bicameral.protocol import BlockingClient, RPCError  # noqa: E402


class Tally:
    """Thread-safe counters: sent, answered, lost, and errors by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1


def proc_stats(pid: int) -> dict[str, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def upstream_pids(home: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"--home-tag" in args and str(home).encode() in args and state != "Z":
            found.append(int(entry))
    return found


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
        self.home.chmod(0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL")}
        self.servers = [f"s{i}" for i in range(args.servers)]
        self.rpc = Tally()
        self.mcp = Tally()
        self.chaos = Tally()
        self.deadline = 0.0
        self.pid = 0

    def cli(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bicameral", "--home", str(self.home), *argv],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def configure(self) -> None:
        lines = []
        for name in self.servers:
            lines += [
                f"[mcp.servers.{name}]",
                f"command = {json.dumps(sys.executable)}",
                "args = "
                + json.dumps([str(TEST_SERVER), "--name", name, "--home-tag", str(self.home)]),
            ]
        path = self.home / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    # -- RPC clients -----------------------------------------------------------------

    def rpc_client(self, n: int) -> None:
        methods = itertools.cycle(["system.version", "system.health", "adapters.list"])
        socket_path = str(self.home / "daemon.sock")
        while self.running():
            try:
                client = BlockingClient.connect_unix(socket_path, timeout=self.args.timeout)
            except OSError as exc:
                self.rpc.error(f"connect: {type(exc).__name__}")
                time.sleep(0.1)
                continue
            with client:
                while self.running():
                    method = next(methods)
                    self.rpc.add("sent")
                    try:
                        client.call(method, timeout=self.args.timeout)
                    except RPCError as exc:
                        self.rpc.error(f"{method}: rpc error {exc.code}")
                        continue
                    except (OSError, ValueError) as exc:
                        self.rpc.add("lost")
                        self.rpc.error(f"{method}: {type(exc).__name__}")
                        break
                    self.rpc.add("answered")
                    if self.args.rpc_pause:
                        time.sleep(self.args.rpc_pause)

    # -- MCP clients through the bridge -------------------------------------------------

    def mcp_client(self, n: int) -> None:
        while self.running():
            bridge = subprocess.Popen(
                [sys.executable, "-m", "bicameral", "--home", str(self.home), "mcp"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
            )
            try:
                self._mcp_session(bridge, n)
            finally:
                if bridge.stdin is not None:
                    bridge.stdin.close()
                try:
                    bridge.wait(10)
                except subprocess.TimeoutExpired:
                    self.mcp.error("bridge did not exit after stdin closed")
                    bridge.kill()
                    bridge.wait()
                for stream in (bridge.stdout, bridge.stderr):
                    if stream is not None:
                        stream.close()

    def _mcp_session(self, bridge: subprocess.Popen[bytes], n: int) -> None:
        assert bridge.stdin is not None and bridge.stdout is not None
        out_fd = bridge.stdout.fileno()
        buffer = bytearray()
        ids = itertools.count(1)

        def request(method: str, params: Any) -> Any:
            rid = next(ids)
            line = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
            assert bridge.stdin is not None
            bridge.stdin.write(json.dumps(line).encode() + b"\n")
            bridge.stdin.flush()
            until = time.monotonic() + self.args.timeout
            while True:
                end = buffer.find(b"\n")
                if end >= 0:
                    message = json.loads(bytes(buffer[:end]))
                    del buffer[: end + 1]
                    if isinstance(message, dict) and message.get("id") == rid:
                        return message
                    continue  # a notification (list_changed...)
                remaining = until - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{method}: no answer in {self.args.timeout} s")
                readable, _, _ = select.select([out_fd], [], [], remaining)
                if readable:
                    chunk = os.read(out_fd, 65536)
                    if not chunk:
                        raise ConnectionError(f"{method}: the bridge closed its stdout")
                    buffer.extend(chunk)

        try:
            init = request(
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": f"soak-{n}", "version": "1"},
                },
            )
            if "result" not in init:
                self.mcp.error(f"initialize: {init.get('error')}")
                return
            bridge.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            bridge.stdin.flush()
        except (OSError, ValueError) as exc:
            self.mcp.error(f"initialize: {type(exc).__name__}")
            return
        servers = itertools.cycle(self.servers)
        # Each session makes a bounded number of calls, then a new bridge starts:
        # bridges come and go as they do for real clients.
        for i in range(self.args.calls_per_session):
            if not self.running():
                return
            text = f"soak-{n}-{i}-" + "x" * random.randrange(0, 2000)
            self.mcp.add("sent")
            try:
                reply = request(
                    "tools/call", {"name": f"{next(servers)}__echo", "arguments": {"text": text}}
                )
            except (OSError, ValueError) as exc:
                self.mcp.add("lost")
                self.mcp.error(f"tools/call: {type(exc).__name__}")
                return
            result = reply.get("result")
            if isinstance(result, dict) and not result.get("isError"):
                content = result.get("content") or [{}]
                if content[0].get("text") == text:
                    self.mcp.add("answered")
                else:
                    self.mcp.error("tools/call: wrong answer")
            elif isinstance(result, dict):
                message = str((result.get("content") or [{}])[0].get("text", ""))[:60]
                self.mcp.error(f"tools/call tool error: {message}")
            else:
                error = reply.get("error") or {}
                self.mcp.error(f"tools/call error {error.get('code')}: {error.get('message')}"[:90])

    # -- chaos --------------------------------------------------------------------------

    def chaos_thread(self) -> None:
        next_kill = time.monotonic() + self.args.kill_every
        next_reload = time.monotonic() + self.args.reload_every
        use_sighup = False
        while self.running():
            now = time.monotonic()
            if now >= next_kill:
                victims = upstream_pids(self.home)
                if victims:
                    try:
                        os.kill(random.choice(victims), signal.SIGKILL)
                        self.chaos.add("upstreams killed")
                    except ProcessLookupError:
                        pass
                next_kill = now + self.args.kill_every
            if now >= next_reload:
                if use_sighup:
                    os.kill(self.pid, signal.SIGHUP)
                    self.chaos.add("SIGHUP reloads")
                else:
                    run = self.cli("daemon", "reload")
                    self.chaos.add("reload commands")
                    if run.returncode != 0:
                        self.chaos.error(f"reload: {run.stderr.strip()[:80]}")
                use_sighup = not use_sighup
                next_reload = now + self.args.reload_every
            time.sleep(min(0.5, max(0.0, self.deadline - time.monotonic())))

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.configure()
        started = self.cli("daemon", "start")
        if started.returncode != 0:
            raise SystemExit(f"daemon start failed: {started.stderr}")
        self.pid = json.loads(started.stdout)["pid"]
        samples = {"idle_before": proc_stats(self.pid)}
        t0 = time.monotonic()
        self.deadline = t0 + self.args.minutes * 60
        threads = [
            threading.Thread(target=self.rpc_client, args=(i,), daemon=True)
            for i in range(self.args.rpc_clients)
        ]
        threads += [
            threading.Thread(target=self.mcp_client, args=(i,), daemon=True)
            for i in range(self.args.mcp_clients)
        ]
        threads.append(threading.Thread(target=self.chaos_thread, daemon=True))
        for thread in threads:
            thread.start()
        warm = min(30.0, self.args.minutes * 60 / 5)
        time.sleep(warm)
        samples["after_warmup"] = proc_stats(self.pid)
        while self.running():
            time.sleep(min(1.0, max(0.0, self.deadline - time.monotonic())))
        samples["end_under_load"] = proc_stats(self.pid)
        for thread in threads:
            thread.join(self.args.timeout + 15)
        stuck = sum(1 for t in threads if t.is_alive())
        # Bridges are gone; give the daemon a moment to close their sessions.
        settle = time.monotonic() + 10
        while time.monotonic() < settle:
            stats = proc_stats(self.pid)
            if stats["fds"] <= samples["idle_before"]["fds"] + len(self.servers) * 3:
                break
            time.sleep(0.2)
        samples["idle_after"] = proc_stats(self.pid)
        health = None
        adapters: Any = None
        try:
            with BlockingClient.connect_unix(str(self.home / "daemon.sock"), timeout=10) as c:
                health = c.call("system.health", timeout=10)["status"]
                adapters = [
                    {k: a.get(k) for k in ("name", "state", "restarts", "last_exit")}
                    for a in c.call("adapters.list", timeout=10)
                ]
        except (OSError, RPCError) as exc:
            health = f"unreachable: {exc}"
        stop = self.cli("daemon", "stop")
        log = Path(tempfile.gettempdir()) / f"soak-daemon-{self.pid}.log"
        shutil.copy(self.home / "daemon.log", log)
        return {
            "daemon_log": str(log),
            "minutes": self.args.minutes,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "daemon_pid": self.pid,
            "servers": len(self.servers),
            "rpc_clients": self.args.rpc_clients,
            "mcp_clients": self.args.mcp_clients,
            "samples": samples,
            "rpc": {**self.rpc.counts, "errors": dict(self.rpc.errors)},
            "mcp": {**self.mcp.counts, "errors": dict(self.mcp.errors)},
            "chaos": {**self.chaos.counts, "errors": dict(self.chaos.errors)},
            "threads_stuck": stuck,
            "health_at_end": health,
            "adapters_at_end": adapters,
            "stop": stop.stdout.strip() or stop.stderr.strip(),
        }

    def cleanup(self) -> None:
        for pid in upstream_pids(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rpc-clients", type=int, default=4)
    parser.add_argument("--mcp-clients", type=int, default=3)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between kills")
    parser.add_argument("--reload-every", type=float, default=45.0, help="seconds between reloads")
    parser.add_argument(
        "--rpc-pause", type=float, default=0.002, help="seconds between an RPC client's calls"
    )
    parser.add_argument("--calls-per-session", type=int, default=500)
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds before a request is lost"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        report = soak.run()
    finally:
        soak.cleanup()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    s = report["samples"]
    print(
        f"\nRSS KiB: {s['idle_before']['rss_kib']} idle before, {s['after_warmup']['rss_kib']} "
        f"after warm-up, {s['end_under_load']['rss_kib']} at the end, "
        f"{s['idle_after']['rss_kib']} idle after\n"
        f"fds:     {s['idle_before']['fds']} idle before, {s['after_warmup']['fds']} after "
        f"warm-up, {s['end_under_load']['fds']} at the end, {s['idle_after']['fds']} idle after\n"
        f"RPC: {report['rpc'].get('sent', 0)} sent, {report['rpc'].get('answered', 0)} answered, "
        f"{report['rpc'].get('lost', 0)} lost; MCP: {report['mcp'].get('sent', 0)} sent, "
        f"{report['mcp'].get('answered', 0)} answered, {report['mcp'].get('lost', 0)} lost",
        file=sys.stderr,
    )
    lost = report["rpc"].get("lost", 0) + report["mcp"].get("lost", 0)
    return 0 if lost == 0 and report["health_at_end"] in ("ok", "degraded") else 1


if __name__ == "__main__":
    sys.exit(main())
