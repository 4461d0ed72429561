"""Sharing without leaks: what a server keeps per session stays the client's own.

Two or more official SDK clients, through `bicameral mcp --server`, against
the test server's observer tools (``observed``, ``roots``, ``remember``,
``log_at``): each test pins one way a shared server used to leak one
client's session into another's (docs/mcp.md, "Sharing").
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import mcp_types as types
import pytest
import trio
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from tests.mcp._support import sampler, text
from tests.mcp._support import session as sdk_session
from tests.mcp.conftest import McpHome

# The SDK warns that roots and logging are deprecated in the 2026 era; these
# tests speak the handshake era, where they are current.
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


def session(home: McpHome, server: str | None = "alpha", **callbacks: Any) -> Any:
    return sdk_session(home, server, **callbacks)


async def observed(client: ClientSession) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads(text(await client.call_tool("observed", {})))
    return seen


def roots_of(*uris: str) -> Any:
    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=uri) for uri in uris])  # type: ignore[arg-type]

    return list_roots


async def test_each_client_gets_exactly_its_own_roots(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    mine = ["file:///tmp/x/sub"]
    theirs = ["file:///tmp/other"]
    async with (
        session(mcp_home, list_roots_callback=roots_of(*mine)) as a,
        session(mcp_home, list_roots_callback=roots_of(*theirs)) as b,
    ):
        assert text(await a.call_tool("roots", {})) == "file:///tmp/x/sub"
        assert text(await b.call_tool("roots", {})) == "file:///tmp/other"
        assert text(await a.call_tool("roots", {})) == "file:///tmp/x/sub"


async def known_roots(client: ClientSession, expected: list[str]) -> Any:
    """What the server learnt of its roots on its own, once it is `expected` (bounded)."""
    with trio.move_on_after(10):
        while (seen := (await observed(client)).get("known_roots")) != expected:
            pass  # each call is a round trip: this waits on the server, not a clock
    return seen


async def test_a_server_asking_for_roots_on_its_own_gets_its_clients_from_the_start(
    mcp_home: McpHome,
) -> None:
    # As server-filesystem does: it asks when the client is ready, outside
    # any call. It must get its own client's roots, never an error.
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    async with (
        session(mcp_home, list_roots_callback=roots_of("file:///tmp/x/sub")) as a,
        session(mcp_home, list_roots_callback=roots_of("file:///tmp/other")) as b,
    ):
        assert await known_roots(a, ["file:///tmp/x/sub"]) == ["file:///tmp/x/sub"]
        assert await known_roots(b, ["file:///tmp/other"]) == ["file:///tmp/other"]


async def test_a_clients_roots_change_reaches_its_server_and_no_other_client(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    current = ["file:///tmp/first"]

    async def changing(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=u) for u in current])  # type: ignore[arg-type]

    async with (
        session(mcp_home, list_roots_callback=changing) as a,
        session(mcp_home, list_roots_callback=roots_of("file:///tmp/first")) as b,
    ):
        assert text(await a.call_tool("roots", {})) == "file:///tmp/first"
        assert text(await b.call_tool("roots", {})) == "file:///tmp/first"
        current[:] = ["file:///tmp/second"]
        await a.send_roots_list_changed()
        with trio.fail_after(10):
            # The daemon asks the client again, then tells its server: each
            # call is a round trip, so this waits on the change, not a clock.
            seen = ""
            while seen != "file:///tmp/second":
                seen = text(await a.call_tool("roots", {}))
        assert await known_roots(a, ["file:///tmp/second"]) == ["file:///tmp/second"]
        assert text(await b.call_tool("roots", {})) == "file:///tmp/first"
        assert (await observed(b))["known_roots"] == ["file:///tmp/first"]


async def test_the_server_sees_only_the_capabilities_of_its_clients(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})

    async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", model="m", content=types.TextContent(type="text", text="x")
        )

    async with (
        session(mcp_home) as plain,
        session(mcp_home, sampling_callback=sampling) as sampler,
    ):
        assert (await observed(plain))["capabilities"] == []
        assert (await observed(sampler))["capabilities"] == ["sampling"]
        # A tool that needs a capability the client lacks fails as it would
        # against the server itself, not with a proxy's own error.
        with pytest.raises(MCPError, match=r"(?i)sampling not supported"):
            await plain.call_tool("sample", {"prompt": "x"})


async def test_sampling_is_never_refused_when_two_clients_have_calls_in_flight(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    asked: dict[str, list[str]] = {"a": [], "b": []}

    async with (
        session(mcp_home, sampling_callback=sampler("a", asked)) as a,
        session(mcp_home, sampling_callback=sampler("b", asked)) as b,
    ):
        in_flight = trio.Event()

        async def progress(value: float, total: float | None, message: str | None) -> None:
            in_flight.set()

        results: dict[str, str] = {}
        async with trio.open_nursery() as nursery:

            async def a_slow() -> None:
                await a.call_tool("slow", {"steps": 3, "delay": 0.5}, progress_callback=progress)

            async def both_sample(client: ClientSession, who: str) -> None:
                results[who] = text(await client.call_tool("sample", {"prompt": f"for {who}"}))

            nursery.start_soon(a_slow)
            await in_flight.wait()  # a has a call in flight; now both ask at once
            nursery.start_soon(both_sample, a, "a")
            nursery.start_soon(both_sample, b, "b")
    assert results == {"a": "a", "b": "b"}
    assert asked == {"a": ["for a"], "b": ["for b"]}


async def test_log_level_is_per_client(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    got: dict[str, list[str]] = {"a": [], "b": []}
    arrived = {"a": trio.Event(), "b": trio.Event()}

    def collector(who: str) -> Any:
        async def logging_callback(params: types.LoggingMessageNotificationParams) -> None:
            got[who].append(f"{params.level}:{params.data}")
            arrived[who].set()

        return logging_callback

    async with (
        session(mcp_home, logging_callback=collector("a")) as a,
        session(mcp_home, logging_callback=collector("b")) as b,
    ):
        await a.set_logging_level("debug")
        await b.set_logging_level("emergency")  # b must not silence a
        assert (await observed(a))["level"] == "debug"
        await a.call_tool("log_at", {"level": "info", "message": "from a"})
        await a.call_tool("log_at", {"level": "emergency", "message": "loud a"})
        await b.call_tool("log_at", {"level": "emergency", "message": "from b"})
        with trio.fail_after(5):
            await arrived["a"].wait()
            await arrived["b"].wait()
        # The same instance serves both; each gets only what it asked for, of
        # what its own calls caused (a's emergency is not b's business).
        assert (await observed(a))["pid"] == (await observed(b))["pid"]
    assert got["a"] == ["info:from a", "emergency:loud a"]
    assert got["b"] == ["emergency:from b"]


async def test_per_client_instances_keep_session_state_apart(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha", share="per-client")})
    async with session(mcp_home) as a, session(mcp_home) as b:
        assert text(await a.call_tool("remember", {"note": "secret of a"})) == "note://1"
        uris_a = {str(r.uri) for r in (await a.list_resources()).resources}
        uris_b = {str(r.uri) for r in (await b.list_resources()).resources}
        assert "note://1" in uris_a
        assert "note://1" not in uris_b
        assert (await observed(b))["notes"] == []
        assert (await observed(a))["pid"] != (await observed(b))["pid"]


async def test_a_restarted_server_gets_back_its_clients_log_level_and_subscriptions(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    told = trio.Event()
    notes: list[str] = []

    async def logging_callback(params: types.LoggingMessageNotificationParams) -> None:
        notes.append(str(params.data))
        if "restarted" in str(params.data):
            told.set()

    async with session(mcp_home, logging_callback=logging_callback) as a:
        await a.set_logging_level("info")
        await a.subscribe_resource("test://greeting")  # type: ignore[arg-type]
        before = await observed(a)
        assert before["level"] == "info" and before["subscriptions"] == ["test://greeting"]
        os.kill(before["pid"], signal.SIGKILL)
        with trio.fail_after(20):
            while True:
                try:
                    after = await observed(a)
                except Exception:
                    continue  # the call that met the dead process fails; the next waits
                if after["pid"] != before["pid"]:
                    break
            await told.wait()
        assert after["level"] == "info"
        assert after["subscriptions"] == ["test://greeting"]
    assert any("restored log level info and 1 subscription" in n for n in notes), notes


async def test_mcp_ps_shows_each_instance_and_the_clients_it_serves(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    async with (
        session(mcp_home) as plain,
        session(mcp_home, list_roots_callback=roots_of("file:///tmp/proj")) as rooted,
    ):
        plain_pid = (await observed(plain))["pid"]
        rooted_pid = (await observed(rooted))["pid"]
        run = mcp_home.cli("mcp", "ps", "--json")
        assert run.returncode == 0, run.stderr
        (row,) = json.loads(run.stdout)["servers"]
        assert row["share"] == "auto" and row["clients"] == 2
        by_pid = {inst["pid"]: inst for inst in row["instances"]}
        primary = by_pid[plain_pid]
        assert primary["name"] == "server" and primary["capabilities"] == []
        assert len(primary["clients"]) == 1
        keyed = by_pid[rooted_pid]
        assert keyed["capabilities"] == ["roots"] and keyed["roots"] == ["file:///tmp/proj"]
        assert len(keyed["clients"]) == 1
        table = mcp_home.cli("mcp", "ps").stdout
        assert "file:///tmp/proj" in table


async def test_aggregated_tasks_are_routed_by_their_server(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha"), "beta": mcp_home.test_server("beta")}
    )
    async with session(mcp_home, None) as client:
        got = await client.send_request(
            types.GetTaskRequest(params=types.GetTaskRequestParams(task_id="beta__t-7")),
            types.GetTaskResult,
        )
        assert got.task_id == "beta__t-7" and got.status == "working"
        cancelled = await client.send_request(
            types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id="alpha__t-1")),
            types.CancelTaskResult,
        )
        assert cancelled.task_id == "alpha__t-1" and cancelled.status == "cancelled"
        listed = await client.send_request(types.ListTasksRequest(), types.ListTasksResult)
        assert sorted(t.task_id for t in listed.tasks) == [
            "alpha__t-1",
            "alpha__t-2",
            "beta__t-1",
            "beta__t-2",
        ]


async def test_a_server_that_pages_its_lists_is_passed_through_page_by_page(
    mcp_home: McpHome,
) -> None:
    paged = mcp_home.test_server("alpha", env={"TESTSERVER_PAGE_SIZE": "4"})
    mcp_home.configure({"alpha": paged, "beta": mcp_home.test_server("beta")})
    for server in ("alpha", None):
        async with session(mcp_home, server) as client:
            pages: list[list[str]] = []
            cursor: str | None = None
            while True:
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await client.list_tools(params=params)
                pages.append([t.name for t in page.tools])
                cursor = page.next_cursor
                if not cursor:
                    break
            names = [n for page in pages for n in page]
            if server == "alpha":
                assert len(pages) > 2 and all(len(p) == 4 for p in pages[:-1]), pages
                assert "echo" in names
            else:
                # The first page: bicameral's own tools and beta (which does not
                # page); then alpha's pages as alpha made them.
                assert "beta__echo" in pages[0] and "alpha__echo" not in pages[0]
                assert all(len(p) == 4 for p in pages[1:-1]) and "alpha__echo" in names
            assert len(names) == len(set(names))


async def test_aggregated_names_stay_within_64_characters_and_unique(mcp_home: McpHome) -> None:
    long_a = "a" * 60
    long_b = "a" * 59 + "b"
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    async with session(mcp_home, None) as client:
        for name in (long_a, long_b):
            assert text(await client.call_tool("alpha__add_tool", {"tool_name": name})) == "added"
        with trio.fail_after(10):
            while True:
                tools = {t.name for t in (await client.list_tools()).tools}
                long = sorted(n for n in tools if n.startswith("alpha__aaaa"))
                if len(long) == 2:
                    break
        assert all(len(n) <= 64 for n in tools)
        assert long[0] != long[1] and len(long[0]) == len(long[1]) == 64
        results = {text(await client.call_tool(n, {"text": "x"})) for n in long}
        assert results == {f"{long_a}:x", f"{long_b}:x"}
