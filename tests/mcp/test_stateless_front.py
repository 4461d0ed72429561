"""The stateless front (MCP 2026-07-28): what bicameral's listener answers itself.

A real daemon with its HTTP listener, the test server behind ``/mcp/alpha``
and ``/mcp``; the requests are raw HTTP (``httpx2``), since an SDK client
cannot send the malformed ones: a missing or broken ``_meta`` envelope,
headers that contradict the body, removed methods, ``subscriptions/listen``
read frame by frame.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio

from tests.mcp._support import wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import start, token

VERSION = "2026-07-28"
PV, CAPS = "io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities"
SUB = "io.modelcontextprotocol/subscriptionId"
_ids = itertools.count(100)


def envelope(caps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {PV: VERSION, CAPS: caps or {}, "io.modelcontextprotocol/clientInfo": {"name": "raw"}}


def request(method: str, params: dict[str, Any] | None, rid: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids) if rid is None else rid}
    message["method"] = method
    if params is not None:
        message["params"] = params
    return message


def headers(key: str, method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    """What a 2026-07-28 client sends: the token, the version, ``Mcp-Method`` (and ``Mcp-Name``)."""
    sent = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": method,
    }
    if name is not None:
        sent["Mcp-Name"] = name
    return {**sent, **extra}


@asynccontextmanager
async def listener(home: McpHome) -> AsyncIterator[tuple[str, httpx2.AsyncClient, str]]:
    home.configure({"alpha": home.test_server("alpha")})
    base = start(home)
    key = token(home)
    async with httpx2.AsyncClient(timeout=30) as http:
        yield base, http, key


async def post(
    http: httpx2.AsyncClient, url: str, key: str, message: dict[str, Any], **extra: str
) -> tuple[int, dict[str, Any]]:
    params = message.get("params") or {}
    name = params.get("name") if message["method"] == "tools/call" else None
    sent = headers(key, message["method"], name, **extra)
    response = await http.post(url, content=json.dumps(message), headers=sent)
    assert response.content, (response.status_code, response.headers)
    return response.status_code, response.json()


async def test_the_envelope_is_checked_with_statuses_and_the_request_id(mcp_home: McpHome) -> None:
    async with listener(mcp_home) as (base, http, key):
        url = f"{base}/mcp/alpha"
        status, answer = await post(http, url, key, request("tools/list", {}, rid=7))
        assert (status, answer["id"], answer["error"]["code"]) == (400, 7, -32602)
        for missing in (PV, CAPS):
            meta = {k: v for k, v in envelope().items() if k != missing}
            status, answer = await post(http, url, key, request("tools/list", {"_meta": meta}, 8))
            assert (status, answer["id"], answer["error"]["code"]) == (400, 8, -32602), missing
        # Header and body disagree: a header mismatch, not an unsupported version.
        wrong = {"_meta": {**envelope(), PV: "v999"}}
        status, answer = await post(http, url, key, request("tools/list", wrong, 9))
        assert (status, answer["id"], answer["error"]["code"]) == (400, 9, -32020)
        # A version nobody serves, in both: -32022 naming what bicameral serves.
        status, answer = await post(
            http,
            url,
            key,
            request("server/discover", wrong, 10),
            **{"MCP-Protocol-Version": "v999"},
        )
        assert (status, answer["id"], answer["error"]["code"]) == (400, 10, -32022)
        assert answer["error"]["data"] == {"supported": [VERSION], "requested": "v999"}
        status, discovered = await post(
            http, url, key, request("server/discover", {"_meta": envelope()})
        )
        assert status == 200 and discovered["result"]["supportedVersions"] == [VERSION]
        # The envelope's other keys are optional: no clientInfo is fine.
        bare = {"_meta": {PV: VERSION, CAPS: {}}}
        status, listed = await post(http, url, key, request("tools/list", bare))
        assert status == 200 and "locate" in [t["name"] for t in listed["result"]["tools"]]


async def test_routing_headers_must_match_the_body(mcp_home: McpHome) -> None:
    async with listener(mcp_home) as (base, http, key):
        for url, tool in ((f"{base}/mcp/alpha", "echo"), (f"{base}/mcp", "alpha__echo")):
            call = request("tools/call", {"name": tool, "arguments": {"text": "x"}, "_meta": {}})
            call["params"]["_meta"] = envelope()
            status, answer = await post(http, url, key, call)
            assert status == 200 and answer["result"]["content"][0]["text"] == "x"
            for bad in ({"Mcp-Name": "other"}, {"Mcp-Method": "tools/list"}, {"Mcp-Method": ""}):
                status, answer = await post(http, url, key, call, **bad)
                assert (status, answer["id"]) == (400, call["id"]), bad
                assert answer["error"]["code"] == -32020, bad
            listing = request("tools/list", {"_meta": envelope()})
            status, answer = await post(http, url, key, listing, **{"Mcp-Method": "TOOLS/LIST"})
            assert (status, answer["error"]["code"]) == (400, -32020)
            # A routing header sent twice: readers would disagree on which counts.
            twice = [(k, v) for k, v in headers(key, "tools/list").items()]
            twice.append(("Mcp-Method", "tools/list"))
            response = await http.post(url, content=json.dumps(listing), headers=twice)
            assert (response.status_code, response.json()["error"]["code"]) == (400, -32020)


async def test_mcp_param_headers_are_checked_against_the_arguments(mcp_home: McpHome) -> None:
    async with listener(mcp_home) as (base, http, key):
        for url, tool in ((f"{base}/mcp/alpha", "locate"), (f"{base}/mcp", "alpha__locate")):
            call = request("tools/call", {"name": tool, "arguments": {"region": "eu-west"}})
            call["params"]["_meta"] = envelope()
            good = {"Mcp-Param-Region": "eu-west"}
            status, answer = await post(http, url, key, call, **good)
            assert status == 200 and answer["result"]["content"][0]["text"] == "region=eu-west"
            # Base64 form of a value (for those that cannot travel as they are).
            status, answer = await post(
                http, url, key, call, **{"Mcp-Param-Region": "=?base64?ZXUtd2VzdA==?="}
            )
            assert status == 200, answer
            for bad in ({"Mcp-Param-Region": "us-east"}, {}):
                status, answer = await post(http, url, key, call, **bad)
                assert (status, answer["id"], answer["error"]["code"]) == (400, call["id"], -32020)


async def test_removed_methods_are_404_and_a_capability_never_declared_is_32021(
    mcp_home: McpHome,
) -> None:
    async with listener(mcp_home) as (base, http, key):
        for url in (f"{base}/mcp/alpha", f"{base}/mcp"):
            for method, params in (
                ("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}}),
                ("ping", {}),
                ("logging/setLevel", {"level": "debug"}),
                ("resources/subscribe", {"uri": "test://greeting"}),
                ("resources/unsubscribe", {"uri": "test://greeting"}),
                ("no/such/method", {}),
            ):
                message = request(method, {**params, "_meta": envelope()})
                status, answer = await post(http, url, key, message)
                assert (status, answer["id"]) == (404, message["id"]), method
                assert answer["error"]["code"] == -32601, method
        # A server refuses a client that lacks a capability (-32021): the
        # refusal reaches it whole, as a 400; with the capability declared,
        # the same call succeeds (its server sees what it declared, §8.4).
        call = request("tools/call", {"name": "needs_sampling", "arguments": {}})
        call["params"]["_meta"] = envelope({"elicitation": {}})
        status, answer = await post(http, f"{base}/mcp/alpha", key, call)
        assert (status, answer["id"]) == (400, call["id"]), answer
        assert answer["error"]["code"] == -32021
        assert answer["error"]["data"]["requiredCapabilities"] == {"sampling": {}}
        call["params"]["_meta"] = envelope({"sampling": {}})
        status, answer = await post(http, f"{base}/mcp/alpha", key, call)
        assert status == 200 and "declared sampling" in answer["result"]["content"][0]["text"]


class Listening:
    """One open ``subscriptions/listen`` stream, read frame by frame."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(30):
            async for line in self.lines:
                if line.startswith("data: "):
                    frame: dict[str, Any] = json.loads(line[6:])
                    return frame
        raise AssertionError("the listen stream ended")


@asynccontextmanager
async def listen(
    http: httpx2.AsyncClient, url: str, key: str, rid: int, wanted: dict[str, Any]
) -> AsyncIterator[Listening]:
    message = request("subscriptions/listen", {"notifications": wanted, "_meta": envelope()}, rid)
    sent = headers(key, "subscriptions/listen")
    async with http.stream("POST", url, content=json.dumps(message), headers=sent) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Listening(response.aiter_lines())


async def call(http: httpx2.AsyncClient, url: str, key: str, tool: str, **args: Any) -> Any:
    message = request("tools/call", {"name": tool, "arguments": args, "_meta": envelope()})
    return (await post(http, url, key, message))[1]


async def test_subscriptions_listen_acknowledges_tags_filters_and_outlives_restarts(
    mcp_home: McpHome,
) -> None:
    async with listener(mcp_home) as (base, http, key):
        url = f"{base}/mcp/alpha"
        wanted = {"toolsListChanged": True, "resourceSubscriptions": ["test://greeting"]}
        async with listen(http, url, key, 4242, wanted) as stream:
            ack = await stream.next()
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"]["notifications"] == wanted
            assert ack["params"]["_meta"] == {SUB: 4242}

            # A resources list change was not asked for: it never comes. (Once
            # resources/list answers, the new list is known and its notice
            # would have been queued before the update that follows.)
            assert "result" in await call(http, url, key, "remember", note="n")
            await post(http, url, key, request("resources/list", {"_meta": envelope()}))
            assert "result" in await call(http, url, key, "touch", uri="test://greeting")
            frame = await stream.next()
            assert frame["method"] == "notifications/resources/updated"
            assert frame["params"]["uri"] == "test://greeting"
            assert frame["params"]["_meta"][SUB] == 4242

            assert "result" in await call(http, url, key, "add_tool", tool_name="dynamic")
            frame = await stream.next()
            assert frame["method"] == "notifications/tools/list_changed"
            assert frame["params"]["_meta"] == {SUB: 4242}

            # The server restarts (without the tool it added): the stream lives
            # on, says the list changed, and the subscription was restored.
            await call(http, url, key, "crash")
            frame = await stream.next()
            assert frame["method"] == "notifications/tools/list_changed"
            assert frame["params"]["_meta"] == {SUB: 4242}
            assert "result" in await call(http, url, key, "touch", uri="test://greeting")
            frame = await stream.next()
            assert frame["method"] == "notifications/resources/updated"
            assert frame["params"]["_meta"][SUB] == 4242

            # The daemon stopping ends the stream gracefully: the listen's own answer.
            with trio.fail_after(30):
                stopped = await trio.to_thread.run_sync(mcp_home.cli, "daemon", "stop")
            assert stopped.returncode == 0, stopped.stderr
            last = await stream.next()
            assert last["id"] == 4242
            assert last["result"] == {"_meta": {SUB: 4242}, "resultType": "complete"}


@pytest.mark.parametrize("path", ["", "/alpha"])
async def test_a_listen_stream_in_the_aggregated_view_names_resources_as_the_view_does(
    mcp_home: McpHome, path: str
) -> None:
    async with listener(mcp_home) as (base, http, key):
        url = f"{base}/mcp{path}"
        uri = "bicameral://alpha/test://greeting" if not path else "test://greeting"
        tool = "alpha__touch" if not path else "touch"
        nowhere = ["bicameral://nowhere/x"] if not path else []
        wanted = {"resourceSubscriptions": [uri, *nowhere]}
        async with listen(http, url, key, 7, wanted) as stream:
            ack = await stream.next()
            # What no server could subscribe is left out of the acknowledgement.
            assert ack["params"]["notifications"] == {"resourceSubscriptions": [uri]}
            assert "result" in await call(http, url, key, tool, uri="test://greeting")
            frame = await stream.next()
            assert (frame["method"], frame["params"]["uri"]) == (
                "notifications/resources/updated",
                uri,
            )


async def test_cache_hints_are_passed_through_and_bicamerals_own_are_private(
    mcp_home: McpHome,
) -> None:
    """A server's ``ttlMs``/``cacheScope`` reach the client; where it gave none: 0, private."""
    modern = mcp_home.test_server("modern")
    modern["args"] = [*modern["args"], "--modern-only", "--cache-hints"]
    mcp_home.configure({"alpha": mcp_home.test_server("alpha"), "modern": modern})
    base = start(mcp_home)
    key = token(mcp_home)
    async with httpx2.AsyncClient(timeout=30) as http:
        for path, uri, hints in (
            ("/modern", "test://greeting", (5000, "public")),
            ("", "bicameral://modern/test://greeting", (5000, "public")),
            ("/alpha", "test://greeting", (0, "private")),
        ):
            read = request("resources/read", {"uri": uri, "_meta": envelope()})
            status, answer = await post(http, f"{base}/mcp{path}", key, read, **{"Mcp-Name": uri})
            assert status == 200, answer
            result = answer["result"]
            assert "hello from" in result["contents"][0]["text"]
            assert (result["ttlMs"], result["cacheScope"]) == hints, path
        # Lists are bicameral's own answer (its view, its instance): never shared.
        listing = request("tools/list", {"_meta": envelope()})
        status, answer = await post(http, f"{base}/mcp/modern", key, listing)
        assert (answer["result"]["ttlMs"], answer["result"]["cacheScope"]) == (0, "private")


async def test_closing_a_listen_stream_ends_it_and_its_session(mcp_home: McpHome) -> None:
    """The stateless era's cancellation: the client closes the stream; nothing stays behind."""

    def clients() -> int:
        rows = json.loads(mcp_home.cli("mcp", "ps", "--json").stdout)["servers"]
        return int(next(r for r in rows if r["name"] == "alpha")["clients"])

    async with listener(mcp_home) as (base, http, key):
        wanted = {"resourceSubscriptions": ["test://greeting"]}
        async with listen(http, f"{base}/mcp/alpha", key, 1, wanted) as stream:
            assert (await stream.next())["method"] == "notifications/subscriptions/acknowledged"
            assert clients() == 1
        await trio.to_thread.run_sync(wait_until, lambda: clients() == 0)
