"""Both protocol eras on the server side: a server that speaks only 2026-07-28.

The test server's ``--modern-only`` refuses the ``initialize`` handshake, as
a server of the stateless era alone does; its ``sample_rounds`` tool asks for
sampling the 2026-07-28 way (an ``input_required`` round). Clients of both
eras use it through the bridge.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from tests.mcp._support import text
from tests.mcp.conftest import McpHome


async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
    content = params.messages[0].content
    assert isinstance(content, types.TextContent)
    reply = types.TextContent(type="text", text=f"sampled {content.text}")
    return types.CreateMessageResult(role="assistant", model="m", content=reply)


@pytest.mark.parametrize(("mode", "era"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_clients_of_both_eras_use_a_server_of_the_stateless_era(
    mcp_home: McpHome, mode: str, era: str
) -> None:
    table = mcp_home.test_server("modern")
    table["args"] = [*table["args"], "--modern-only"]
    mcp_home.configure({"modern": table})
    async with Client(mcp_home.params("modern"), mode=mode, sampling_callback=sampling) as client:
        assert client.protocol_version == era
        assert client.server_info is not None and client.server_info.name == "modern"
        assert text(await client.call_tool("echo", {"text": "plain"})) == "plain"
        # The server's input_required round reaches a handshake-era client as a
        # sampling request, a stateless-era one as a round of its own.
        answer = await client.call_tool("sample_rounds", {"prompt": "q"})
        assert text(answer) == "rounds: sampled q"
    shown = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)
    (server,) = shown["servers"]
    assert server["protocol_version"] == "2026-07-28"


async def test_a_modern_clients_log_level_in_its_envelope_opts_it_in_to_log_messages(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    seen: list[tuple[str, Any]] = []

    async def logged(params: types.LoggingMessageNotificationParams) -> None:
        seen.append((params.level, params.data))

    async with Client(mcp_home.params("alpha"), logging_callback=logged) as quiet:
        await quiet.call_tool("log", {"message": "unasked"})
    async with Client(
        mcp_home.params("alpha"), logging_callback=logged, log_level="info"
    ) as modern:
        assert modern.protocol_version == "2026-07-28"
        assert text(await modern.call_tool("log", {"message": "asked"})) == "logged"
    assert seen == [("warning", "asked")]


@pytest.mark.parametrize("upstream", ["handshake", "modern"])
async def test_a_stateless_client_without_roots_is_never_asked_for_them_over_http(
    mcp_home: McpHome, upstream: str
) -> None:
    """§8.5: bicameral's sharing decisions never cause an ``input_required`` round."""
    import httpx2

    from tests.mcp.test_http import post_headers, start, token

    table = mcp_home.test_server("alpha")
    table["args"] = [*table["args"], "--lazy-roots"]
    if upstream == "modern":
        table["args"] = [*table["args"], "--modern-only"]
    mcp_home.configure({"alpha": table})
    base = start(mcp_home)
    headers = {**post_headers(token(mcp_home)), "Mcp-Protocol-Version": "2026-07-28"}
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        # The suite's client declares every capability: roots too.
        everything = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}
        for caps in ({}, everything):
            meta = dict(envelope)
            if caps is not None:
                meta["io.modelcontextprotocol/clientCapabilities"] = caps
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta},
            }
            # The era's routing headers say what the body says (SPEC §8.5).
            routing = {"Mcp-Method": "tools/call", "Mcp-Name": "echo"}
            answer = (await http.post(f"{base}/mcp/alpha", json=call, headers=routing)).json()
            assert "result" in answer, (caps, answer)
            result = answer["result"]
            assert result["resultType"] == "complete", (caps, answer)
            assert result["content"][0]["text"] == "hi"


@pytest.mark.parametrize("transport", ["http"])  # (over stdio the SDK picks 2025-11-25)
async def test_a_stateless_client_is_asked_for_roots_only_when_its_server_asks(
    mcp_home: McpHome, transport: str
) -> None:
    """A plain call costs no round; the server's own roots/list reaches the client."""
    import contextlib

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from tests.mcp.test_http import start, token

    table = mcp_home.test_server("alpha")
    table["args"] = [*table["args"], "--lazy-roots"]
    mcp_home.configure({"alpha": table})
    asked: list[int] = []

    async def list_roots(context: Any) -> types.ListRootsResult:
        asked.append(1)
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/rooted")])

    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            opened: Any = Client(mcp_home.params("alpha"), list_roots_callback=list_roots)
        else:
            base = start(mcp_home)
            auth = {"Authorization": f"Bearer {token(mcp_home)}"}
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=auth, timeout=30))
            opened = Client(
                streamable_http_client(f"{base}/mcp/alpha", http_client=http),
                list_roots_callback=list_roots,
            )
        modern = await stack.enter_async_context(opened)
        assert modern.protocol_version == "2026-07-28"
        assert text(await modern.call_tool("echo", {"text": "plain"})) == "plain"
        assert asked == []
        assert text(await modern.call_tool("roots", {})) == "file:///tmp/rooted"
        assert asked
