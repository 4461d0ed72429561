"""The audit log: one JSON line per ``tools/call``, with a real daemon and SDK clients.

``[daemon.audit] enabled = true``: every client ``tools/call`` (through the
HTTP listener or the stdio bridge, aggregated or one server's view) is one
line of ``audit.log`` (0600) naming the time, the client, the view, the
server, the tool, the duration and the outcome; arguments and results only
with ``arguments = true``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp._support import text, wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import start, token


def entries(home: McpHome) -> list[dict[str, Any]]:
    path = home.path / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_tools_call_is_one_line_whatever_its_outcome(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")}, daemon="[daemon.audit]\nenabled = true\n"
    )
    base = start(mcp_home)
    key = token(mcp_home)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as every,
    ):
        assert (
            text(await every.call_tool("alpha__echo", {"text": "secret words"})) == "secret words"
        )
        failed = await every.call_tool("alpha__add", {"a": "not a number", "b": 1})
        assert failed.is_error
        await every.list_tools()  # not a tools/call: not audited
    async with Client(mcp_home.params("alpha")) as one:  # the bridge, one server's view
        assert text(await one.call_tool("add", {"a": 2, "b": 3})) == "5"

    lines = wait_until(lambda: (found := entries(mcp_home)) and len(found) >= 3 and found)
    assert len(lines) == 3
    assert (mcp_home.path / "audit.log").stat().st_mode & 0o777 == 0o600
    first, second, third = lines
    assert {k: first[k] for k in ("view", "server", "tool", "outcome")} == {
        "view": "*",
        "server": "alpha",
        "tool": "echo",
        "outcome": "ok",
    }
    assert first["client"]["id"].startswith("client-")
    assert first["client"]["name"]  # the SDK's clientInfo name
    assert first["duration_ms"] >= 0
    datetime.fromisoformat(first["time"])
    assert (second["tool"], second["outcome"]) == ("add", "tool-error")
    assert (third["view"], third["tool"], third["outcome"]) == ("alpha", "add", "ok")
    assert third["client"]["id"] != first["client"]["id"]
    # Without `arguments = true` neither what was asked nor what came back.
    raw = (mcp_home.path / "audit.log").read_text()
    assert "secret words" not in raw
    assert all("arguments" not in e and "result" not in e for e in lines)


async def test_arguments_and_results_only_when_asked(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")},
        daemon="[daemon.audit]\nenabled = true\narguments = true\n",
    )
    async with Client(mcp_home.params()) as client:
        assert text(await client.call_tool("alpha__echo", {"text": "hello"})) == "hello"
    (entry,) = wait_until(lambda: entries(mcp_home))
    assert entry["arguments"] == {"text": "hello"}
    assert entry["result"]["content"][0]["text"] == "hello"


async def test_a_server_that_dies_mid_call_is_an_error_line(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")}, daemon="[daemon.audit]\nenabled = true\n"
    )
    async with Client(mcp_home.params("alpha"), mode="legacy") as client:
        await client.list_tools()
        try:
            await client.call_tool("crash", {})
        except Exception as exc:  # the SDK raises the JSON-RPC error
            assert "crash" in str(exc) or "failed" in str(exc)
    (entry,) = wait_until(lambda: entries(mcp_home))
    assert (entry["tool"], entry["outcome"]) == ("crash", "error")
    assert entry["error"]["code"] < 0 and entry["error"]["message"]


def test_a_bad_audit_table_fails_the_start_in_one_line(mcp_home: McpHome) -> None:
    for table, complaint in (
        ('enabled = "yes"', "[daemon.audit] enabled must be true or false"),
        ("enable = true", "unknown key 'enable' in [daemon.audit]"),
    ):
        mcp_home.configure({}, daemon=f"[daemon.audit]\n{table}\n")
        done = mcp_home.cli("daemon", "start")
        assert done.returncode == 1
        assert complaint in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert mcp_home.descriptor() is None
    mcp_home.configure({}, daemon="[daemon.audt]\nenabled = true\n")
    done = mcp_home.cli("daemon", "start")
    assert done.returncode == 1 and "unknown key 'audt' in [daemon]" in done.stderr
