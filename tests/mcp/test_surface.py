"""The tool surface through a real daemon: rules, profiles, search, accounting (docs/tools.md).

Official SDK clients (``mcp.Client``) of both eras (``legacy``: the
``initialize`` handshake; ``auto``: 2026-07-28, ``server/discover``) on both
fronts: the stdio bridge (``bicameral mcp [--server NAME | --profile NAME]``)
and the HTTP listener (``/mcp/NAME``, ``/mcp``, ``/mcp/p/NAME``).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.mcp._support import text, wait_until
from tests.mcp.conftest import BICAMERAL, McpHome

ERAS = pytest.mark.parametrize(("mode", "era"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])

RULES = """
[mcp.servers.alpha.tools]
deny = ["crash*"]
rename = { echo = "say" }
descriptions = { say = "Say the text back." }

[mcp.servers.alpha.prompts]
deny = ["greet"]

[mcp.servers.alpha.resources]
deny = ["test://*"]

[mcp.profiles.small]
servers = ["alpha"]
search = "on"
pinned = ["alpha__say"]
deny = ["alpha__hang"]
"""

HIDDEN_CRASH = r"hidden by \[mcp.servers.alpha.tools\] deny \"crash\*\""


def configure(home: McpHome, extra: str = RULES, **servers: dict[str, Any]) -> None:
    home.configure(servers or {"alpha": home.test_server("alpha")})
    with (home.path / "config.toml").open("a") as file:
        file.write(extra)


def names(result: types.ListToolsResult) -> list[str]:
    return [tool.name for tool in result.tools]


def ps(home: McpHome) -> dict[str, Any]:
    done = home.cli("mcp", "ps", "--json")
    assert done.returncode == 0, done.stderr
    rows: dict[str, Any] = {row["name"]: row for row in json.loads(done.stdout)["servers"]}
    return rows


async def refused(client: Client, tool: str, match: str, arguments: Any = None) -> None:
    with pytest.raises(MCPError, match=match):
        await client.call_tool(tool, arguments or {})


@asynccontextmanager
async def http_client(url: str, key: str, mode: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
            yield client


def no_profile() -> Any:
    """The MCP error a client of an unknown profile gets (the SDK may wrap it in groups)."""
    return pytest.RaisesGroup(
        pytest.RaisesExc(MCPError, match=r"no profile named 'nope' .*\(profiles: default, small\)"),
        flatten_subgroups=True,
        allow_unwrapped=True,
    )


def start(home: McpHome, *args: str) -> None:
    """Start the daemon and wait for alpha to be ready.

    A client in ``auto`` mode that connects while a fresh daemon starts its
    server may see its ``server/discover`` probe time out and fall back to
    the handshake era (the SDK's policy): the era tests connect once ready.
    """
    done = home.cli("daemon", "start", *args)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: ps(home)["alpha"]["state"] == "ready")


def start_http(home: McpHome) -> tuple[str, str]:
    start(home, "--http", "127.0.0.1:0")
    descriptor = home.descriptor()
    assert descriptor is not None
    return str(descriptor["http_url"]), (home.path / "http.token").read_text().strip()


# -- per-server rules ------------------------------------------------------------------


@ERAS
async def test_rules_hide_rename_and_refuse_on_the_bridge(
    mcp_home: McpHome, mode: str, era: str
) -> None:
    configure(mcp_home)
    start(mcp_home)
    async with Client(mcp_home.params("alpha"), mode=mode) as one:
        assert one.protocol_version == era
        tools = {tool.name: tool for tool in (await one.list_tools()).tools}
        assert "say" in tools and "echo" not in tools and "crash" not in tools
        assert tools["say"].description == "Say the text back."
        assert text(await one.call_tool("say", {"text": "hi"})) == "hi"
        await refused(one, "crash", HIDDEN_CRASH)
        await refused(one, "echo", r"'echo' is offered as 'say'")
        assert "greet" not in [p.name for p in (await one.list_prompts()).prompts]
        with pytest.raises(MCPError, match=r"hidden by \[mcp.servers.alpha.prompts\]"):
            await one.get_prompt("greet", {"who": "x"})
        assert not [r for r in (await one.list_resources()).resources if "test://" in str(r.uri)]
        with pytest.raises(MCPError, match=r"hidden by \[mcp.servers.alpha.resources\]"):
            await one.read_resource("test://greeting")
    async with Client(mcp_home.params(), mode=mode) as every:
        listed = names(await every.list_tools())
        assert "alpha__say" in listed and "alpha__crash" not in listed
        assert "bicameral__status" in listed
        await refused(every, "alpha__crash", HIDDEN_CRASH)
        await refused(every, "alpha__echo", r"offered as 'alpha__say'")
        assert text(await every.call_tool("alpha__say", {"text": "all"})) == "all"
    # `crash` never reached the server: it did not crash.
    row = ps(mcp_home)["alpha"]
    assert row["restarts"] == 0 and row["state"] == "ready"
    assert row["offered_tools"] == row["tools"] - 1  # crash
    assert row["schema_bytes"] > 0 and row["schema_tokens"] == (row["schema_bytes"] + 3) // 4


@ERAS
async def test_rules_and_profiles_apply_on_the_listener(
    mcp_home: McpHome, mode: str, era: str
) -> None:
    configure(mcp_home)
    base, key = start_http(mcp_home)
    async with http_client(f"{base}/mcp/alpha", key, mode) as one:
        assert one.protocol_version == era
        listed = names(await one.list_tools())
        assert "say" in listed and "crash" not in listed
        await refused(one, "crash", HIDDEN_CRASH)
    async with http_client(f"{base}/mcp", key, mode) as every:
        assert "alpha__crash" not in names(await every.list_tools())
        await refused(every, "alpha__crash", HIDDEN_CRASH)
    async with http_client(f"{base}/mcp/p/small", key, mode) as small:
        listed = names(await small.list_tools())
        assert listed == ["bicameral__search_tools", "bicameral__call_tool", "alpha__say"]
        found = await small.call_tool("bicameral__search_tools", {"query": "add two numbers"})
        assert found.structured_content is not None
        assert found.structured_content["tools"][0]["name"] == "alpha__add"
        called = await small.call_tool(
            "bicameral__call_tool", {"name": "alpha__add", "arguments": {"a": 2, "b": 3}}
        )
        assert text(called) == "5"
    with no_profile():
        async with http_client(f"{base}/mcp/p/nope", key, mode) as nope:
            await nope.list_tools()
    async with httpx2.AsyncClient(timeout=30) as http:
        metrics = (
            await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"})
        ).text
    assert 'bicameral_mcp_server_offered_tools{server="alpha"} 15.0' in metrics
    assert 'bicameral_mcp_server_tool_schema_bytes{server="alpha"}' in metrics
    assert 'bicameral_mcp_server_tool_schema_tokens_estimate{server="alpha"}' in metrics


# -- profiles and search mode ----------------------------------------------------------


@ERAS
async def test_search_mode_finds_and_calls_tools_as_if_called_directly(
    mcp_home: McpHome, mode: str, era: str
) -> None:
    configure(mcp_home)
    start(mcp_home)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(mcp_home.params(profile="small"), mode=mode) as small:
        assert small.protocol_version == era
        tools = (await small.list_tools()).tools
        assert [t.name for t in tools] == [
            "bicameral__search_tools",
            "bicameral__call_tool",
            "alpha__say",
        ]
        found = await small.call_tool(
            "bicameral__search_tools", {"query": "add 2 integers together"}
        )
        assert found.structured_content is not None
        best = found.structured_content["tools"][0]
        assert best["name"] == "alpha__add" and "a" in best["inputSchema"]["properties"]
        # The call goes through as if made directly: result, progress, errors.
        slow = await small.call_tool(
            "bicameral__call_tool",
            {"name": "alpha__slow", "arguments": {"steps": 3, "delay": 0.01}},
            progress_callback=on_progress,
        )
        assert not slow.is_error and progress == [1.0, 2.0, 3.0]
        # A tool found by search may also be called by its own name.
        assert text(await small.call_tool("alpha__add", {"a": 1, "b": 1})) == "2"
        direct = await small.call_tool("alpha__add", {"a": "x"})
        inner = await small.call_tool(
            "bicameral__call_tool", {"name": "alpha__add", "arguments": {"a": "x"}}
        )
        assert direct.is_error and inner.is_error and text(inner) == text(direct)
        await refused(
            small, "bicameral__call_tool", HIDDEN_CRASH, {"name": "alpha__crash", "arguments": {}}
        )
        await refused(
            small,
            "bicameral__call_tool",
            r"hidden by \[mcp.profiles.small\] deny \"alpha__hang\"",
            {"name": "alpha__hang"},
        )
    assert ps(mcp_home)["alpha"]["restarts"] == 0


async def test_an_unknown_profile_is_an_mcp_error_and_one_line_on_a_terminal(
    mcp_home: McpHome,
) -> None:
    configure(mcp_home)
    for mode in ("legacy", "auto"):
        with no_profile():
            async with Client(mcp_home.params(profile="nope"), mode=mode) as client:
                await client.list_tools()
    # A person who runs it by hand on a terminal gets one line, naming the profiles.
    ours, theirs = pty.openpty()
    try:
        done = subprocess.run(  # noqa: ASYNC221 (a short-lived child, on purpose)
            [BICAMERAL, *mcp_home.bridge_argv(profile="nope")],
            stdin=theirs,
            capture_output=True,
            env=mcp_home.env,
            timeout=30,
            check=False,
        )
    finally:
        os.close(ours)
        os.close(theirs)
    assert done.returncode == 1
    assert done.stderr.decode().count("\n") == 1
    assert "no profile named 'nope'" in done.stderr.decode()
    assert "(profiles: default, small)" in done.stderr.decode()


# -- rules survive list_changed, restarts and reloads ------------------------------------


async def test_rules_hold_across_list_changed_and_restarts_with_valid_names(
    mcp_home: McpHome,
) -> None:
    configure(mcp_home)
    async with Client(mcp_home.params("alpha"), mode="legacy") as one:
        for name in ("crash_plan", "dotted.name"):
            assert text(await one.call_tool("add_tool", {"tool_name": name})) == "added"
        with trio.fail_after(10):  # each turn is a round trip: the relisting is on its way
            while "dotted_name" not in (listed := names(await one.list_tools())):
                pass
        assert "crash_plan" not in listed and "dotted.name" not in listed
        await refused(one, "crash_plan", HIDDEN_CRASH)
        assert text(await one.call_tool("dotted_name", {"text": "x"})) == "dotted.name:x"
    async with Client(mcp_home.params(), mode="auto") as every:
        listed = names(await every.list_tools())
        assert "alpha__dotted_name" in listed and "alpha__crash_plan" not in listed
        assert text(await every.call_tool("alpha__dotted_name", {"text": "y"})) == "dotted.name:y"
    pid = ps(mcp_home)["alpha"]["pid"]
    assert mcp_home.cli("mcp", "restart", "alpha").returncode == 0
    wait_until(lambda: ps(mcp_home)["alpha"]["pid"] not in (None, pid))
    async with Client(mcp_home.params("alpha"), mode="auto") as again:
        listed = names(await again.list_tools())
        assert "say" in listed and "echo" not in listed and "crash" not in listed
        await refused(again, "crash", HIDDEN_CRASH)


async def test_a_bad_reload_keeps_the_running_rules_and_a_good_one_applies(
    mcp_home: McpHome,
) -> None:
    configure(mcp_home)
    start(mcp_home)
    good = (mcp_home.path / "config.toml").read_text()
    async with Client(mcp_home.params(), mode="legacy") as every:
        assert "alpha__add" in names(await every.list_tools())
        for bad, message in (
            (
                '[mcp.profiles.x]\nservers = ["alpah"]\n',
                "[mcp.profiles.x] \"servers\" names no configured server 'alpah'",
            ),
            (
                '[mcp.profiles.y]\ndeny = ["alpha__nothing_*"]\n',
                '[mcp.profiles.y] deny "alpha__nothing_*" matches no tool',
            ),
            (
                good.replace('deny = ["crash*"]', 'deny = ["crash", "nothing_*"]'),
                '[mcp.servers.alpha.tools] deny "nothing_*" matches none of its 16 tools',
            ),
            (
                good.replace('echo = "say"', 'echo = "add"'),
                "rename echo = \"add\": the server already has a tool named 'add'",
            ),
        ):
            (mcp_home.path / "config.toml").write_text(bad if "[mcp.servers" in bad else good + bad)
            done = mcp_home.cli("daemon", "reload")
            assert done.returncode != 0 and message in done.stderr, done.stderr
            assert str(mcp_home.path / "config.toml") in done.stderr
        await refused(every, "alpha__crash", HIDDEN_CRASH)  # the running rules hold
        (mcp_home.path / "config.toml").write_text(good.replace('"crash*"]', '"crash*", "add"]'))
        assert mcp_home.cli("daemon", "reload").returncode == 0
        listed = names(await every.list_tools())
        assert "alpha__add" not in listed and "alpha__say" in listed
        await refused(every, "alpha__add", r"deny \"add\"", {"a": 1, "b": 2})


async def test_a_pinned_tool_that_is_not_there_is_a_warning_once_the_server_lists(
    mcp_home: McpHome,
) -> None:
    configure(mcp_home, RULES.replace('pinned = ["alpha__say"]', 'pinned = ["alpha__sey"]'))
    assert mcp_home.cli("daemon", "start").returncode == 0
    log = mcp_home.path / "daemon.log"
    wait_until(lambda: 'pinned "alpha__sey": no such tool' in log.read_text())
    assert "did you mean 'alpha__say'?" in log.read_text()


# -- accounting ----------------------------------------------------------------------------


def test_mcp_tools_prints_what_a_view_receives_with_the_total(mcp_home: McpHome) -> None:
    configure(mcp_home)
    start(mcp_home)
    full = json.loads(mcp_home.cli("mcp", "tools", "--json").stdout)
    small = json.loads(mcp_home.cli("mcp", "tools", "--profile", "small", "--json").stdout)
    one = json.loads(mcp_home.cli("mcp", "tools", "--server", "alpha", "--json").stdout)
    assert full["view"] == "/mcp" and not full["search"]
    assert [t["name"] for t in small["tools"]] == [
        "bicameral__search_tools",
        "bicameral__call_tool",
        "alpha__say",
    ]
    assert small["search"] and small["catalog"]["tools"] == full["total"]["tools"] - 1  # hang
    assert full["total"]["bytes"] == sum(t["bytes"] for t in full["tools"])
    assert full["total"]["tokens"] == (full["total"]["bytes"] + 3) // 4
    assert one["tools"][0]["name"] == "say"
    nope = mcp_home.cli("mcp", "tools", "--profile", "nope")
    assert nope.returncode == 1 and nope.stderr.count("\n") == 1
    assert "(profiles: default, small)" in nope.stderr


def test_command_line_mistakes_are_one_line(mcp_home: McpHome) -> None:
    configure(mcp_home)
    for argv, code, words in (
        (["mcp", "--server", "alpha", "--profile", "small"], 2, "cannot be combined"),
        (["mcp", "--profile="], 2, "--profile needs a profile's name"),
        (["mcp", "tools", "--profile", "small", "--server", "alpha"], 2, "not both"),
        (["mcp", "tools"], 1, "no daemon is running"),
        (["mcp", "--profile", "small", "list"], 2, "--profile is for the bridge"),
    ):
        done = mcp_home.cli(*argv)
        assert done.returncode == code, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, (argv, done.stderr)


def test_replacing_a_server_keeps_its_rules_and_comments(mcp_home: McpHome) -> None:
    configure(mcp_home)
    done = mcp_home.cli("mcp", "add", "alpha", "--replace", "--", "cat")
    assert done.returncode == 0, done.stderr
    text_ = (mcp_home.path / "config.toml").read_text()
    assert 'command = "cat"' in text_
    assert '[mcp.servers.alpha.tools]\ndeny = ["crash*"]' in text_
    assert "[mcp.servers.alpha.resources]" in text_ and "[mcp.profiles.small]" in text_


async def test_a_hidden_tool_is_absent_from_every_page(mcp_home: McpHome) -> None:
    paged = mcp_home.test_server("alpha", env={"TESTSERVER_PAGE_SIZE": "4"})
    configure(mcp_home, RULES, alpha=paged)
    for server, crash, say in (("alpha", "crash", "say"), (None, "alpha__crash", "alpha__say")):
        async with Client(mcp_home.params(server), mode="legacy") as client:
            pages, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                pages.append(names(page))
                cursor = page.next_cursor
                if not cursor:
                    break
            listed = [name for page in pages for name in page]
            assert len(pages) > 2 and crash not in listed and say in listed, pages
            assert len(listed) == len(set(listed))


@ERAS
async def test_a_call_through_call_tool_gets_its_servers_requests_answered(
    mcp_home: McpHome, mode: str, era: str
) -> None:
    # The server asks its client for sampling during the inner call: a
    # handshake-era client gets the request, a stateless-era one a round.
    configure(mcp_home)
    start(mcp_home)

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        reply = types.TextContent(type="text", text=f"sampled {content.text}")
        return types.CreateMessageResult(role="assistant", model="m", content=reply)

    params = mcp_home.params(profile="small")
    async with Client(params, mode=mode, sampling_callback=sampling) as small:
        assert small.protocol_version == era
        answer = await small.call_tool(
            "bicameral__call_tool", {"name": "alpha__sample", "arguments": {"prompt": "q"}}
        )
        assert text(answer) == "sampled q"
