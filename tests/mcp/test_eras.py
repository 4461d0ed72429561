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
