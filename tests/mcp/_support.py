"""Helpers for the MCP tests: server configs, an in-process rig, a raw JSON-RPC client."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import trio
import trio.testing
from mcp import ClientSession, stdio_client

from bicameral.mcp._config import ServerConfig
from bicameral.mcp._host import McpHost
from bicameral.mcp._registry import Registry
from bicameral.supervisor import ChildSpec, Supervisor

TESTSERVER = str(Path(__file__).parent / "servers" / "testserver.py")
#: The stdlib-only server for tests where the server is incidental (see its docstring).
LIGHTSERVER = str(Path(__file__).parent / "servers" / "lightserver.py")

#: An ``initialize`` request, as a raw client (a pipe, an HTTP POST) sends it.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


def server_config(
    name: str, *extra: str, env: dict[str, str] | None = None, light: bool = False
) -> Any:
    """A config running the SDK's test server under `name` (`light`: the light one)."""
    return ServerConfig(
        name=name,
        command=sys.executable,
        args=(LIGHTSERVER if light else TESTSERVER, "--name", name, *extra),
        env=tuple(sorted((env or {}).items())),
        cwd=None,
        enabled=True,
    )


def broken_config(name: str) -> Any:
    return ServerConfig(
        name=name,
        command="/nonexistent/bicameral-test-server",
        args=(),
        env=(),
        cwd=None,
        enabled=True,
    )


class JsonClient:
    """A raw MCP client over an in-memory stream: requests by id, the rest queued."""

    def __init__(self, stream: Any, nursery: trio.Nursery) -> None:
        self.stream = stream
        self._waiting: dict[Any, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._send, self.incoming = trio.open_memory_channel[dict[str, Any]](1000)
        self._ids = itertools.count(1)
        self._lock = trio.Lock()
        nursery.start_soon(self._reader)

    async def _reader(self) -> None:
        buffer = bytearray()
        while True:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                self._send.close()
                return
            buffer += chunk
            if b"\n" not in chunk:
                continue
            *lines, rest = bytes(buffer).split(b"\n")
            buffer = bytearray(rest)
            for line in lines:
                msg = json.loads(line)
                if "method" not in msg and msg.get("id") in self._waiting:
                    await self._waiting.pop(msg["id"]).send(msg)
                else:
                    await self._send.send(msg)

    async def send(self, msg: dict[str, Any]) -> None:
        async with self._lock:
            await self.stream.send_all(json.dumps({"jsonrpc": "2.0", **msg}).encode() + b"\n")

    async def request(self, method: str, params: Any = None, rid: Any = None) -> dict[str, Any]:
        """Send a request and wait for its response message (result or error)."""
        rid = next(self._ids) if rid is None else rid
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[rid] = send
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        return await receive.receive()

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        return await self.request("tools/call", {"name": tool, "arguments": arguments})

    async def next_incoming(self, method: str) -> dict[str, Any]:
        """The next queued message with `method` (others are skipped)."""
        async for msg in self.incoming:
            if msg.get("method") == method:
                return msg
        raise AssertionError(f"connection closed before {method}")

    async def initialize(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        )
        await self.send({"method": "notifications/initialized"})
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


def text_of(response: dict[str, Any]) -> str:
    """The first text content of a tools/call response."""
    assert "result" in response, response
    return str(response["result"]["content"][0]["text"])


def error_text(response: dict[str, Any]) -> str:
    """The error a call ended with: a JSON-RPC error's message, or a tool error's text."""
    if "error" in response:
        return str(response["error"]["message"])
    assert response["result"].get("isError"), response
    return text_of(response)


class _FakeDaemon:
    """The parts of `DaemonHost` the session host uses."""

    def __init__(self, adapters: Supervisor) -> None:
        self.adapters = adapters

    def snapshot(self) -> dict[str, Any]:
        return self.adapters.snapshot()


class Rig:
    """Adapters under a real `Supervisor` and an `McpHost`, in-process."""

    def __init__(self, nursery: trio.Nursery, configs: list[Any]) -> None:
        self.nursery = nursery
        self.registry = Registry()
        self.registry.start_soon = nursery.start_soon
        self.registry.set_configured([c.name for c in configs])
        from bicameral.mcp._adapter import ServerTree
        from bicameral.supervisor import Restart

        self.supervisor = Supervisor(
            "adapters",
            [
                ChildSpec(c.name, ServerTree(c, self.registry), restart=Restart.TRANSIENT)
                for c in configs
            ],
        )
        self.host = McpHost(self.registry, _FakeDaemon(self.supervisor))

    async def start(self) -> Rig:
        """Start the adapters; return once every server is up or has failed once."""
        await self.nursery.start(self.supervisor.run)
        for name in self.registry.configured:
            await self.wait_state(name, "ready", "degraded", "restarting", "failed")
        return self

    async def client(
        self, server: str | None = None, capabilities: dict[str, Any] | None = None
    ) -> JsonClient:
        ours, theirs = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.host.serve, theirs, b"", server)
        client = JsonClient(ours, self.nursery)
        answer = await client.initialize(capabilities)
        assert "result" in answer, answer
        return client

    def upstream(self, name: str) -> Any:
        up = self.registry.get(name)
        assert up is not None
        return up

    async def wait_state(self, name: str, *states: str, pid_not: int | None = None) -> None:
        up = self.upstream(name)
        with trio.fail_after(15):
            while up.state not in states or (pid_not is not None and up.pid in (None, pid_not)):
                await up._changed.wait()

    async def stop(self) -> None:
        with trio.move_on_after(10):
            await self.supervisor.stop()


def kill(pid: int) -> None:
    os.kill(pid, 9)


def wait_until(condition: Any, timeout: float = 30.0) -> Any:
    """Poll a condition of another process (a daemon) until it holds; its value.

    For what only a round trip can tell (a server's state in a daemon);
    in-process tests wait on events instead.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


@asynccontextmanager
async def session(
    home: Any, server: str | None = None, **callbacks: Any
) -> AsyncIterator[ClientSession]:
    """An initialized official-SDK client session through `bicameral mcp [--server]`."""
    async with (
        stdio_client(home.params(server)) as (read, write),
        ClientSession(read, write, **callbacks) as client,
    ):
        await client.initialize()
        yield client


def text(result: types.CallToolResult) -> str:
    """The text of a tool result's first content block."""
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return block.text


def sampler(who: str, asked: dict[str, list[str]], answer: str | None = None) -> Any:
    """A sampling callback: records each prompt under `who`; answers `answer` (or `who`)."""

    async def sampling(
        context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        asked[who].append(content.text)
        reply = types.TextContent(type="text", text=answer if answer is not None else who)
        return types.CreateMessageResult(role="assistant", model="m", content=reply)

    return sampling
