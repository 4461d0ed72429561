"""HTTP sessions: what bicameral sends before the GET stream exists, and quiet sessions ending.

A real daemon with the listener on; raw ``httpx2`` where the test needs to
hold the protocol at a precise step (no GET stream yet), the official SDK
client otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import trio

from tests.mcp._support import INITIALIZE, wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import post_headers, start, token


def _ps(home: McpHome) -> dict[str, Any]:
    done = home.cli("mcp", "ps", "--json")
    assert done.returncode == 0, done.stderr
    servers: list[dict[str, Any]] = json.loads(done.stdout)["servers"]
    return {server["name"]: server for server in servers}


async def test_a_request_sent_before_the_get_stream_opens_waits_for_it(
    mcp_home: McpHome,
) -> None:
    """A server's ``roots/list`` outside any call is delivered on the GET stream once it opens."""
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    base = start(mcp_home)
    headers = post_headers(token(mcp_home))
    url = f"{base}/mcp/alpha"
    init = {**INITIALIZE, "params": {**INITIALIZE["params"], "capabilities": {"roots": {}}}}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        answer = await http.post(url, json=init)
        assert answer.status_code == 200, answer.text
        session = {"Mcp-Session-Id": answer.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=session)).status_code == 202
        # The spare started for a client like this one asks for roots at once:
        # the server is known to ask.
        wait_until(lambda: _ps(mcp_home)["alpha"].get("asks_roots"))
        # The client's roots changed: bicameral asks it (its server asks for
        # roots), with no call in flight and before any GET stream.
        changed = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
        assert (await http.post(url, json=changed, headers=session)).status_code == 202
        get = {**session, "Accept": "text/event-stream"}
        with trio.fail_after(30):  # a failure bound: the request is queued, not lost
            async with http.stream("GET", url, headers=get) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        message = json.loads(line[len("data:") :])
                        break
    assert message.get("method") == "roots/list", message


async def test_a_session_left_without_delete_ends_after_session_idle(mcp_home: McpHome) -> None:
    """Its instance goes back to the pool; the client's next request gets 404."""
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")}, daemon="[mcp]\nsession_idle = 1")
    base = start(mcp_home)
    headers = post_headers(token(mcp_home))
    url = f"{base}/mcp/alpha"
    init = {**INITIALIZE, "params": {**INITIALIZE["params"], "capabilities": {"sampling": {}}}}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        answer = await http.post(url, json=init)
        session = {"Mcp-Session-Id": answer.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=session)).status_code == 202
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert (await http.post(url, json=listing, headers=session)).status_code == 200

        def served() -> list[str]:
            alpha = _ps(mcp_home)["alpha"]
            return [c for inst in alpha["instances"] for c in inst["clients"]]

        # An open GET stream keeps the session, however long it is quiet.
        async with http.stream("GET", url, headers={**session, "Accept": "text/event-stream"}):
            assert served()
            await trio.sleep(1.5)  # past session_idle: still served while the stream is open
            assert served()
        # The client goes away without DELETE (as the TypeScript SDK's close()).
        wait_until(lambda: not served())
        again = await http.post(url, json={**listing, "id": 3}, headers=session)
        assert again.status_code == 404, again.text


async def test_a_client_of_a_new_key_is_served_by_the_warm_spare(mcp_home: McpHome) -> None:
    """Its first call goes to a process that was already running: no start-up to wait for."""
    import mcp_types as types
    from mcp import Client

    from tests.mcp._support import text

    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})

    def rooted(path: str) -> Any:
        async def list_roots(context: Any) -> types.ListRootsResult:
            return types.ListRootsResult(roots=[types.Root(uri=f"file:///tmp/{path}")])

        return list_roots

    def spares() -> list[int]:
        alpha = _ps(mcp_home)["alpha"]
        return [i["pid"] for i in alpha["instances"] if i["spare"] and i["state"] == "ready"]

    params = mcp_home.params("alpha")
    async with Client(params, mode="legacy", list_roots_callback=rooted("one")) as one:
        assert text(await one.call_tool("echo", {"text": "one"})) == "one"
        (spare,) = wait_until(spares)
        async with Client(params, mode="legacy", list_roots_callback=rooted("two")) as two:
            # A new key (other roots): the spare's process serves it.
            assert int(text(await two.call_tool("pid", {}))) == spare
            # ... given its own roots before its call (it had been told none).
            seen = json.loads(text(await two.call_tool("observed", {})))
            assert seen["known_roots"] == ["file:///tmp/two"], seen
        # And another spare is started behind it.
        assert wait_until(lambda: [p for p in spares() if p != spare])


async def test_lists_a_server_does_not_offer_are_its_own_errors_not_empty_lists(
    mcp_home: McpHome,
) -> None:
    """Through ``--server``, prompts/list and resources/list of a tools-only server: -32601."""
    import sys

    import pytest
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    from tests.mcp._support import TESTSERVER

    hostile = str(__import__("pathlib").Path(TESTSERVER).with_name("hostile.py"))
    tag = ["--home-tag", str(mcp_home.path)]
    mcp_home.configure({"plain": {"command": sys.executable, "args": [hostile, "badid", *tag]}})
    async with Client(mcp_home.params("plain"), mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["echo"]
        for listing in (client.list_prompts, client.list_resources):
            with pytest.raises(MCPError) as caught:
                await listing()
            assert caught.value.code == -32601, caught.value


async def test_every_list_changed_is_passed_on_in_both_views(mcp_home: McpHome) -> None:
    """Even one that changes nothing bicameral can see in the list."""
    from mcp import Client

    table = mcp_home.test_server("alpha")
    table["args"] = [*table["args"], "--changed-tool"]
    mcp_home.configure({"alpha": table})
    for server, tool in (("alpha", "changed"), (None, "alpha__changed")):
        told = trio.Event()

        async def handler(message: Any, told: trio.Event = told) -> None:
            if type(message).__name__ == "ResourceListChangedNotification":
                told.set()

        async with Client(mcp_home.params(server), mode="legacy", message_handler=handler) as c:
            await c.list_resources()
            assert not (await c.call_tool(tool, {})).is_error
            with trio.fail_after(10):  # a failure bound
                await told.wait()
