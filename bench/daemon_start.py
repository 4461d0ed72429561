"""A daemon's own start-up cost with local MCP servers: CPU, RSS, PSS, SDK loaded.

Run by hand (Linux: reads /proc):  .venv/bin/python bench/daemon_start.py [SERVERS]

Starts a daemon in a new short state directory with SERVERS (default 1)
copies of the stdlib-only tests/mcp/servers/lightserver.py, waits until all
are ready, and prints one JSON line: the daemon's utime+stime so far
(``cpu_s``), then, 1 s later, its RSS and PSS in MiB, and whether
pydantic_core's extension is mapped (the SDK, ``mcp_types`` and pydantic all
load it). The servers' own processes are not counted. To compare two trees,
run each tree's interpreter alternately and look at `uptime` beside them
(docs/mcp.md, "Start-up and memory").
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bicameral.testing import BicameralDaemon

LIGHTSERVER = (
    Path(__file__).resolve().parent.parent / "tests" / "mcp" / "servers" / "lightserver.py"
)


def _field(path: Path, key: str) -> float:
    for line in path.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    servers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    daemon = BicameralDaemon(prefix="bds-")
    try:
        config = {
            f"s{i}": {"command": sys.executable, "args": [str(LIGHTSERVER)]} for i in range(servers)
        }
        daemon.configure(config)
        daemon.start()
        pid = daemon.pid
        deadline = time.monotonic() + 60
        while servers:
            rows = daemon.call("mcp.servers")
            if rows and all(row["state"] == "ready" for row in rows):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"servers not ready within 60 s: {rows}")
            time.sleep(0.02)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        time.sleep(1.0)
        proc = Path(f"/proc/{pid}")
        row = {
            "servers": servers,
            "cpu_s": cpu,
            "rss_mib": round(_field(proc / "status", "VmRSS"), 1),
            "pss_mib": round(_field(proc / "smaps_rollup", "Pss:"), 1),
            "pydantic_loaded": "_pydantic_core" in (proc / "maps").read_text(),
        }
        print(json.dumps(row))
    finally:
        daemon.stop()
        daemon.close()


if __name__ == "__main__":
    main()
