"""A running daemon with its listener on and a few servers, for the dashboard tests."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from tests.mcp._support import INITIALIZE
from tests.mcp.conftest import McpHome


@dataclass
class Listener:
    home: McpHome
    url: str
    token: str

    def link(self) -> str:
        done = self.home.cli("dashboard", "--no-open", "--json")
        assert done.returncode == 0, done.stderr
        url: str = json.loads(done.stdout)["url"]
        return url

    def call(self, server: str, tool: str, **arguments: Any) -> Any:
        """One tools/call through ``/mcp/SERVER`` (a handshake-era session of its own)."""
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        with httpx2.Client(base_url=self.url, headers=headers, timeout=30) as http:
            opened = http.post(f"/mcp/{server}", json=INITIALIZE)
            sid = opened.headers["mcp-session-id"]
            version = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            http.post(f"/mcp/{server}", json=note, headers=version)
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": tool, "arguments": arguments}}  # fmt: skip
            answer = http.post(f"/mcp/{server}", json=call, headers=version)
            http.delete(f"/mcp/{server}", headers=version)
            return answer


def slow_server(home: McpHome, name: str) -> dict[str, Any]:
    """A test server that takes a second to start: its `starting` state can be seen."""
    spec = home.light_server(name)
    script = "import time, runpy, sys; time.sleep(1); sys.argv = sys.argv[1:]; "
    script += "runpy.run_path(sys.argv[0], run_name='__main__')"
    return {"command": sys.executable, "args": ["-c", script, *spec["args"]]}


@pytest.fixture
def listener() -> Iterator[Listener]:
    home = McpHome()
    try:
        home.configure(
            {
                "alpha": slow_server(home, "alpha"),
                "beta": home.light_server("beta"),
                "gamma": home.light_server("gamma"),
                "broken": {"command": "/nonexistent/bicameral-test-server"},
            },
            daemon='[daemon.http]\nlisten = "127.0.0.1:0"\n',
        )
        done = home.cli("daemon", "start")
        assert done.returncode == 0, done.stderr
        descriptor = home.descriptor()
        assert descriptor is not None
        token = (home.path / "http.token").read_text().strip()
        yield Listener(home, str(descriptor["http_url"]), token)
    finally:
        problems = home.teardown()
        assert not problems, problems
