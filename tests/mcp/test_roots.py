"""Roots reach exactly their client's server, in both eras, through every front (§8.4).

`server-filesystem` (npm) is started with a directory holding ``a/`` and
``b/``: without roots it serves both. A client rooted at ``a/`` must read
nothing under ``b/`` through bicameral, and a client rooted at ``b/``
nothing under ``a/``, whoever came first and whichever era each speaks:
through the bridge (``--server fs``), the aggregated bridge, ``/mcp/fs``
and ``/mcp``. The official Python SDK client is used in ``legacy`` mode
(the ``initialize`` handshake) and ``auto`` mode (2026-07-28: roots reach
it as ``input_required`` rounds).

The server is installed once into a cache directory (`NPM_CACHE`); the
tests are skipped, saying why, only when npm cannot install it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp._support import TESTSERVER
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import start, token

#: Where npm servers are installed for the tests (once; reused by later runs).
NPM_CACHE = Path(
    os.environ.get("BICAMERAL_TEST_NPM", Path.home() / ".cache" / "bicameral-tests" / "npm")
)
FILESYSTEM = "@modelcontextprotocol/server-filesystem@2026.8.31"


def npm_server(package: str, binary: str) -> str:
    """The path of `binary` from the npm `package`, installed into `NPM_CACHE` once."""
    path = NPM_CACHE / "node_modules" / ".bin" / binary
    if path.exists():
        return str(path)
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed: cannot run npm MCP servers")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    argv = ["npm", "install", "--prefix", str(NPM_CACHE), "--prefer-offline"]
    done = subprocess.run(
        [*argv, "--no-audit", "--no-fund", package],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not path.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"npm could not install {package} (registry unreachable?): {last}")
    return str(path)


def tree(home: McpHome) -> Path:
    """``fs/a/a.txt`` and ``fs/b/b.txt`` under the home; the ``fs`` directory."""
    root = home.path / "fs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}.txt").write_text(f"in {name}")
    return root


def roots_of(directory: Path) -> Any:
    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=directory.as_uri())])

    return list_roots


@contextlib.asynccontextmanager
async def opened(
    home: McpHome, front: str, mode: str, rooted: Path, base: str | None
) -> AsyncIterator[Client]:
    """An SDK client rooted at `rooted`, through `front`, in `mode`."""
    callback = roots_of(rooted)
    if front in ("bridge", "aggregated"):
        params = home.params("fs" if front == "bridge" else None)
        async with Client(params, mode=mode, list_roots_callback=callback) as client:
            yield client
        return
    assert base is not None
    url = f"{base}/mcp/fs" if front == "listener" else f"{base}/mcp"
    auth = {"Authorization": f"Bearer {token(home)}"}
    async with httpx2.AsyncClient(headers=auth, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, list_roots_callback=callback) as client:
            yield client


async def read(client: Client, front: str, path: Path) -> str:
    """The file's text, or the error the server gave instead."""
    tool = "read_text_file" if front in ("bridge", "listener") else "fs__read_text_file"
    result = await client.call_tool(tool, {"path": str(path)})
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return ("error: " if result.is_error else "") + block.text


@pytest.mark.parametrize("front", ["bridge", "aggregated", "listener", "aggregated-listener"])
async def test_a_client_rooted_at_a_reads_nothing_under_b_in_either_era(
    mcp_home: McpHome, front: str
) -> None:
    server = npm_server(FILESYSTEM, "mcp-server-filesystem")
    root = tree(mcp_home)
    a, b = root / "a", root / "b"
    mcp_home.configure({"fs": {"command": server, "args": [str(root)]}})
    base = start(mcp_home) if "listener" in front else None
    if base is None:
        assert mcp_home.cli("daemon", "start").returncode == 0
    # Clients of both eras, rooted apart, at the same time and one after the
    # other: whoever came first, nobody gets the other's directory (nor the
    # wider one on the server's command line).
    for first, second in (("auto", "legacy"), ("legacy", "auto"), ("auto", "auto")):
        async with (
            opened(mcp_home, front, first, a, base) as in_a,
            opened(mcp_home, front, second, b, base) as in_b,
        ):
            if first == "auto":
                assert in_a.protocol_version == "2026-07-28"
            # Both list first: both are placed before the server has asked
            # anyone for roots.
            assert (await in_a.list_tools()).tools and (await in_b.list_tools()).tools
            assert await read(in_a, front, a / "a.txt") == "in a"
            assert await read(in_b, front, b / "b.txt") == "in b"
            denied_a = await read(in_a, front, b / "b.txt")
            denied_b = await read(in_b, front, a / "a.txt")
            assert denied_a.startswith("error:") and "denied" in denied_a, denied_a
            assert denied_b.startswith("error:") and "denied" in denied_b, denied_b
            assert await read(in_a, front, a / "a.txt") == "in a"


async def test_a_client_declaring_roots_is_asked_only_once_its_server_asks(
    mcp_home: McpHome,
) -> None:
    """Of a server that never asks, no client is asked; of one that asks lazily, only then."""
    table = {"command": __import__("sys").executable}
    table["args"] = [TESTSERVER, "--name", "lazy", "--home-tag", str(mcp_home.path), "--lazy-roots"]
    mcp_home.configure({"lazy": table})
    asked: list[str] = []

    def callback(who: str) -> Any:
        async def list_roots(context: Any) -> types.ListRootsResult:
            asked.append(who)
            return types.ListRootsResult(roots=[types.Root(uri=f"file:///tmp/{who}")])

        return list_roots

    async with (
        Client(mcp_home.params("lazy"), mode="legacy", list_roots_callback=callback("one")) as one,
        Client(mcp_home.params("lazy"), mode="auto", list_roots_callback=callback("two")) as two,
    ):
        for client in (one, two):
            await client.list_tools()
            result = await client.call_tool("echo", {"text": "plain"})
            assert not result.is_error
        assert asked == []
        # The server asks, in each client's call: each gets its own answer.
        for client, who in ((one, "one"), (two, "two"), (one, "one")):
            result = await client.call_tool("roots", {})
            block = result.content[0]
            assert isinstance(block, types.TextContent)
            assert block.text == f"file:///tmp/{who}", (who, block.text)
        assert sorted(set(asked)) == ["one", "two"]
