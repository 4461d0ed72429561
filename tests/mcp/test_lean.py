"""The daemon speaks to local servers without the SDK (docs/mcp.md, "Start-up and memory")."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bicameral.testing import BicameralDaemon

LIGHTSERVER = str(Path(__file__).parent / "servers" / "lightserver.py")

# A server of the handshake era that answers `initialize` in a version nobody speaks.
_WRONG_VERSION = """
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        result = {"protocolVersion": "1999-01-01", "capabilities": {},
                  "serverInfo": {"name": "old", "version": "0"}}
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"""


def _server(daemon: BicameralDaemon, name: str, bound: float = 60.0) -> dict[str, Any]:
    """`name`'s status once it is ready or has failed at least once (bound: a failure)."""
    deadline = time.monotonic() + bound
    while True:
        rows = {row["name"]: row for row in daemon.call("mcp.servers")}
        row = rows.get(name)
        if row is not None and (row["state"] == "ready" or row["last_error"]):
            return row
        assert time.monotonic() < deadline, f"{name} never settled: {row}"
        time.sleep(0.05)


def test_version_lists_are_the_sdks() -> None:
    from mcp.client import session

    from bicameral.mcp import _handshake

    assert tuple(session.HANDSHAKE_PROTOCOL_VERSIONS) == _handshake.HANDSHAKE_VERSIONS
    assert tuple(session.MODERN_PROTOCOL_VERSIONS) == _handshake.MODERN_VERSIONS
    assert session.LATEST_HANDSHAKE_VERSION == _handshake.LATEST_HANDSHAKE_VERSION
    assert session.LATEST_MODERN_VERSION == _handshake.LATEST_MODERN_VERSION


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_daemon_with_a_local_server_never_loads_the_sdk(
    bicameral_daemon: BicameralDaemon,
) -> None:
    # The SDK (`mcp`) and its models (`mcp_types`) are pydantic models: loading
    # either maps pydantic_core's extension into the process.
    bicameral_daemon.configure({"light": {"command": sys.executable, "args": [LIGHTSERVER]}})
    bicameral_daemon.start()
    row = _server(bicameral_daemon, "light")
    assert row["state"] == "ready", row
    assert row["tools"] == 6
    with bicameral_daemon.client() as client:
        assert client.call("mcp.tools", {"server": "light"})  # answered, through the server
    maps = Path(f"/proc/{bicameral_daemon.pid}/maps").read_text()
    assert "_pydantic_core" not in maps
    assert "trio" in maps or "python" in maps  # the file is the daemon's, and readable


def test_a_server_answering_an_unknown_version_is_refused(
    bicameral_daemon: BicameralDaemon, tmp_path: Path
) -> None:
    script = tmp_path / "old.py"
    script.write_text(_WRONG_VERSION)
    bicameral_daemon.configure({"old": {"command": sys.executable, "args": [str(script)]}})
    bicameral_daemon.start()
    row = _server(bicameral_daemon, "old")
    assert row["state"] != "ready"
    assert "protocol version '1999-01-01'" in row["last_error"]
    assert "2025-11-25" in row["last_error"]  # says what bicameral speaks
