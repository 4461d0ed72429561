"""The session host and the adapters, in-process: routing, ids, restarts.

Real upstream servers (tests/mcp/servers/testserver.py) under a real
`Supervisor`; the clients are raw JSON-RPC over in-memory streams, so each
test controls ids and interleavings exactly.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from bicameral.mcp._common import UpstreamError
from bicameral.supervisor import Backoff
from tests.mcp._support import Rig, broken_config, error_text, kill, server_config, text_of


@pytest.fixture
async def rig(nursery: trio.Nursery) -> AsyncIterator[Rig]:
    rig = await Rig(nursery, [server_config("alpha")]).start()
    yield rig
    await rig.stop()


async def test_initialize_is_answered_from_the_servers_cached_result(rig: Rig) -> None:
    client = await rig.client("alpha")
    answer = await client.request(
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x"}},
    )
    result = answer["result"]
    assert result["serverInfo"] == {"name": "alpha", "version": "1.2.3"}
    assert result["instructions"] == "Test server alpha for bicameral."
    assert result["protocolVersion"] == "2025-06-18"  # the client's older version is kept
    assert result["capabilities"]["tools"]["listChanged"] is True


async def test_single_server_mode_lists_and_calls_under_the_servers_own_names(rig: Rig) -> None:
    client = await rig.client("alpha")
    tools = (await client.request("tools/list"))["result"]["tools"]
    assert {"echo", "pid", "slow", "sample"} <= {t["name"] for t in tools}
    assert text_of(await client.call("echo", text="hello")) == "hello"
    read = await client.request("resources/read", {"uri": "test://greeting"})
    assert read["result"]["contents"][0]["text"] == "hello from alpha"
    prompt = await client.request("prompts/get", {"name": "greet", "arguments": {"who": "Ann"}})
    assert "Ann" in prompt["result"]["messages"][0]["content"]["text"]
    assert (await client.request("ping"))["result"] == {}


async def test_a_message_of_megabytes_crosses_both_ways_intact(rig: Rig) -> None:
    client = await rig.client("alpha")
    text = "".join(chr(0x41 + i % 26) for i in range(3 << 20))  # 3 MiB, many reads each way
    with trio.fail_after(20):
        assert text_of(await client.call("echo", text=text)) == text
    assert text_of(await client.call("echo", text="small")) == "small"


async def test_two_clients_using_the_same_request_id_each_get_their_own_answer(rig: Rig) -> None:
    one, two = await rig.client("alpha"), await rig.client("alpha")
    answers: dict[str, str] = {}

    async def call(client: object, text: str, rid: int) -> None:
        response = await client.request(  # type: ignore[attr-defined]
            "tools/call", {"name": "echo", "arguments": {"text": text}}, rid=rid
        )
        answers[text] = text_of(response)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            # Both clients use the very same ids, concurrently.
            nursery.start_soon(call, one, f"one-{i}", 100 + i)
            nursery.start_soon(call, two, f"two-{i}", 100 + i)
    assert answers == {text: text for text in answers}
    assert len(answers) == 20


async def test_progress_reaches_only_the_calling_client_under_its_own_token(rig: Rig) -> None:
    caller, bystander = await rig.client("alpha"), await rig.client("alpha")
    response = await caller.request(
        "tools/call",
        {
            "name": "slow",
            "arguments": {"steps": 3, "delay": 0.01},
            "_meta": {"progressToken": "tok"},
        },
    )
    assert text_of(response) == "done after 3 steps"
    notes = []
    while True:
        try:
            notes.append(caller.incoming.receive_nowait())
        except trio.WouldBlock:
            break
    progress = [n for n in notes if n.get("method") == "notifications/progress"]
    assert [p["params"]["progress"] for p in progress] == [1, 2, 3]
    assert {p["params"]["progressToken"] for p in progress} == {"tok"}
    with pytest.raises(trio.WouldBlock):
        bystander.incoming.receive_nowait()


async def test_a_cancelled_call_gets_no_answer_and_the_session_goes_on(rig: Rig) -> None:
    client = await rig.client("alpha")
    slow = {
        "name": "slow",
        "arguments": {"steps": 100, "delay": 0.05},
        "_meta": {"progressToken": 1},
    }
    await client.send({"id": "long", "method": "tools/call", "params": slow})
    await client.next_incoming("notifications/progress")  # it is running upstream
    await client.send({"method": "notifications/cancelled", "params": {"requestId": "long"}})
    assert text_of(await client.call("echo", text="after")) == "after"
    left = []
    while True:
        try:
            left.append(client.incoming.receive_nowait())
        except trio.WouldBlock:
            break
    assert all(msg.get("id") != "long" for msg in left)


async def test_sampling_goes_to_the_client_whose_call_caused_it(rig: Rig) -> None:
    bystander = await rig.client("alpha", capabilities={"sampling": {}})
    caller = await rig.client("alpha", capabilities={"sampling": {}})
    async with trio.open_nursery() as nursery:
        result: dict[str, object] = {}

        async def call() -> None:
            result["r"] = await caller.call("sample", prompt="write a haiku")

        nursery.start_soon(call)
        request = await caller.next_incoming("sampling/createMessage")
        assert request["params"]["messages"][0]["content"]["text"] == "write a haiku"
        await caller.send(
            {
                "id": request["id"],
                "result": {
                    "role": "assistant",
                    "model": "m",
                    "content": {"type": "text", "text": "petals"},
                },
            }
        )
    assert text_of(result["r"]) == "petals"  # type: ignore[arg-type]
    with pytest.raises(trio.WouldBlock):
        bystander.incoming.receive_nowait()


async def test_sampling_reaches_its_caller_while_another_client_has_a_call_in_flight(
    rig: Rig,
) -> None:
    busy = await rig.client("alpha", capabilities={"sampling": {}})
    caller = await rig.client("alpha", capabilities={"sampling": {}})
    slow = {"name": "slow", "arguments": {"steps": 2, "delay": 2.0}, "_meta": {"progressToken": 1}}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy.request, "tools/call", slow)
        await busy.next_incoming("notifications/progress")  # busy's call is in flight
        result: dict[str, object] = {}
        done = trio.Event()

        async def call() -> None:
            result["r"] = await caller.call("sample", prompt="x")
            done.set()

        nursery.start_soon(call)
        # The call went to an instance no other client has a call in flight
        # on, so the server's request has exactly one client to go to.
        request = await caller.next_incoming("sampling/createMessage")
        await caller.send(
            {
                "id": request["id"],
                "result": {
                    "role": "assistant",
                    "model": "m",
                    "content": {"type": "text", "text": "ok"},
                },
            }
        )
        await done.wait()
        nursery.cancel_scope.cancel()
    assert text_of(result["r"]) == "ok"  # type: ignore[arg-type]
    pids = {text_of(await busy.call("pid")), text_of(await caller.call("pid"))}
    assert len(pids) == 2  # two instances of the same key


async def test_sampling_for_a_client_without_the_capability_is_an_error(rig: Rig) -> None:
    client = await rig.client("alpha")
    response = await client.call("sample", prompt="x")
    # The server was never told of a sampling capability (its client has
    # none): the refusal is the SDK's own, as with the server run directly.
    assert "sampling not supported" in error_text(response).lower()


async def test_a_call_in_flight_when_the_server_dies_fails_naming_it_and_the_next_call_works(
    rig: Rig,
) -> None:
    client = await rig.client("alpha")
    old_pid = int(text_of(await client.call("pid")))
    with trio.fail_after(2):
        response = await client.call("crash")
    message = response["error"]["message"]
    assert "'alpha'" in message and "exited with status 1" in message
    # The next call waits for the restarted server instead of failing.
    new_pid = int(text_of(await client.call("pid")))
    assert new_pid != old_pid
    assert rig.upstream("alpha").restarts == 1
    # The supervisor did the restart: the server's subtree shows it on its
    # `server` child (the instance), and the entry carries the live status.
    (entry,) = rig.supervisor.snapshot()["children"]
    assert entry["kind"] == "supervisor" and entry["restarts"] == 0
    assert entry["children"][0]["restarts"] == 1
    assert entry["started_value"]["restarts"] == 1


async def test_a_call_made_while_the_server_restarts_waits_for_it(rig: Rig) -> None:
    client = await rig.client("alpha")
    up = rig.upstream("alpha")
    kill(up.pid)
    with trio.fail_after(10):
        # The kill may land while this call is already on its way (then it
        # fails, naming the server), or before (then it waits): both are right;
        # the call after it must reach the restarted server.
        first = await client.call("echo", text="patient")
        if "error" in first:
            assert "'alpha'" in first["error"]["message"]
            first = await client.call("echo", text="patient")
        assert text_of(first) == "patient"
    tools = (await client.request("tools/list"))["result"]["tools"]
    assert "echo" in {t["name"] for t in tools}


async def test_list_changed_is_followed_and_passed_on(rig: Rig) -> None:
    client = await rig.client("alpha")
    assert text_of(await client.call("add_tool", tool_name="fresh")) == "added"
    with trio.fail_after(5):
        await client.next_incoming("notifications/tools/list_changed")
    tools = (await client.request("tools/list"))["result"]["tools"]
    assert "fresh" in {t["name"] for t in tools}
    assert text_of(await client.call("fresh", text="x")) == "fresh:x"


async def test_aggregated_mode_prefixes_names_and_routes_by_them(nursery: trio.Nursery) -> None:
    rig = await Rig(nursery, [server_config("alpha"), server_config("beta")]).start()
    try:
        client = await rig.client(None)
        names = {t["name"] for t in (await client.request("tools/list"))["result"]["tools"]}
        assert {"alpha__echo", "beta__echo", "bicameral__status", "bicameral__restart"} <= names
        assert text_of(await client.call("beta__echo", text="b")) == "b"
        pids = {int(text_of(await client.call(f"{s}__pid"))) for s in ("alpha", "beta")}
        assert len(pids) == 2
        resources = (await client.request("resources/list"))["result"]["resources"]
        uris = {r["uri"] for r in resources}
        assert uris == {"bicameral://alpha/test://greeting", "bicameral://beta/test://greeting"}
        read = await client.request("resources/read", {"uri": "bicameral://beta/test://greeting"})
        assert read["result"]["contents"][0]["text"] == "hello from beta"
        prompts = {p["name"] for p in (await client.request("prompts/list"))["result"]["prompts"]}
        assert prompts == {"alpha__greet", "beta__greet"}
        got = await client.request(
            "prompts/get", {"name": "alpha__greet", "arguments": {"who": "Bo"}}
        )
        assert "Bo" in got["result"]["messages"][0]["content"]["text"]
        status = await client.call("bicameral__status")
        assert status["result"]["structuredContent"]["servers"]["alpha"]["state"] == "ready"
        unknown = await client.call("gamma__echo", text="x")
        assert unknown["error"]["code"] == -32602
    finally:
        await rig.stop()


async def test_a_broken_server_beside_a_good_one_affects_only_itself(nursery: trio.Nursery) -> None:
    rig = await Rig(nursery, [broken_config("broken"), server_config("good", light=True)]).start()
    try:
        client = await rig.client(None)
        assert text_of(await client.call("good__echo", text="fine")) == "fine"
        broken = rig.upstream("broken")
        assert broken.state in ("restarting", "starting", "failed")
        assert "cannot start" in (broken.last_error or "")
        snapshot = rig.supervisor.snapshot()
        entry = {c["name"]: c for c in snapshot["children"]}["broken"]
        assert "cannot start" in entry["started_value"]["last_error"]
        with trio.fail_after(3), pytest.raises(UpstreamError, match="not available"):
            await rig.upstream("broken").request(None, "tools/list", None, wait=0.5)
    finally:
        await rig.stop()


async def test_a_server_that_comes_back_with_no_tools_is_degraded_and_clients_are_told(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    flag = tmp_path / "no-tools"
    rig = await Rig(
        nursery, [server_config("alpha", env={"TESTSERVER_NO_TOOLS_IF": str(flag)})]
    ).start()
    try:
        client = await rig.client("alpha")
        old = rig.upstream("alpha").pid
        flag.write_text("")
        kill(old)
        await rig.wait_state("alpha", "degraded", pid_not=old)
        with trio.fail_after(5):
            await client.next_incoming("notifications/tools/list_changed")
        assert rig.upstream("alpha").health == "degraded"
        assert (await client.request("tools/list"))["result"]["tools"] == []
    finally:
        await rig.stop()


async def test_a_hung_server_is_restarted_by_the_ping_watchdog(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BICAMERAL_MCP_PING_INTERVAL", "0.1")
    monkeypatch.setenv("BICAMERAL_MCP_PING_TIMEOUT", "0.2")
    rig = await Rig(nursery, [server_config("alpha", light=True)]).start()
    try:
        client = await rig.client("alpha")
        old = rig.upstream("alpha").pid
        with trio.fail_after(5):
            response = await client.call("hang")
        assert "stopped answering pings" in response["error"]["message"]
        await rig.wait_state("alpha", "ready", pid_not=old)
        assert old is not None
        with pytest.raises(ProcessLookupError):
            os.kill(old, 0)
    finally:
        await rig.stop()


async def test_a_crash_looping_server_shows_failed_with_its_reason_and_can_be_restarted(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bicameral.mcp import _adapter

    monkeypatch.setattr(_adapter, "BACKOFF", Backoff(initial=0.01, maximum=0.02))
    flag = tmp_path / "fail"
    flag.write_text("")
    looping = server_config("looping", env={"TESTSERVER_FAIL_IF": str(flag)})
    rig = await Rig(nursery, [looping, server_config("good")]).start()
    try:
        await rig.wait_state("looping", "failed")
        entry = {c["name"]: c for c in rig.supervisor.snapshot()["children"]}["looping"]
        assert entry["state"] == "failed"  # the tree says so, with the reason
        assert "exited with status 3" in entry["last_exit"]["error"]
        assert "exited with status 3" in entry["started_value"]["last_error"]
        assert "failing on purpose" in entry["started_value"]["last_error"]
        client = await rig.client(None)
        assert text_of(await client.call("good__echo", text="unaffected")) == "unaffected"
        refused = await client.call("looping__echo", text="x")
        assert "failed" in refused["error"]["message"]
        flag.unlink()
        answer = await client.call("bicameral__restart", server="looping")
        assert "restarted 'looping'" in text_of(answer)
        await rig.wait_state("looping", "ready")
        assert text_of(await client.call("looping__echo", text="back")) == "back"
        entry = {c["name"]: c for c in rig.supervisor.snapshot()["children"]}["looping"]
        assert entry["state"] == "running"
    finally:
        await rig.stop()


async def test_roots_requests_reach_the_calling_client(rig: Rig) -> None:
    client = await rig.client("alpha", capabilities={"roots": {"listChanged": True}})
    async with trio.open_nursery() as nursery:
        result: dict[str, object] = {}

        async def call() -> None:
            result["r"] = await client.call("roots")

        nursery.start_soon(call)
        request = await client.next_incoming("roots/list")
        roots = [{"uri": "file:///work/a"}, {"uri": "file:///work/b"}]
        await client.send({"id": request["id"], "result": {"roots": roots}})
    assert text_of(result["r"]) == "file:///work/a,file:///work/b"  # type: ignore[arg-type]


async def test_elicitation_goes_to_the_calling_client_and_its_answer_back(rig: Rig) -> None:
    bystander = await rig.client("alpha", capabilities={"elicitation": {}})
    caller = await rig.client("alpha", capabilities={"elicitation": {}})
    async with trio.open_nursery() as nursery:
        result: dict[str, object] = {}

        async def call() -> None:
            result["r"] = await caller.call("ask", question="who are you?")

        nursery.start_soon(call)
        request = await caller.next_incoming("elicitation/create")
        assert request["params"]["message"] == "who are you?"
        assert "name" in request["params"]["requestedSchema"]["properties"]
        await caller.send(
            {"id": request["id"], "result": {"action": "accept", "content": {"name": "Ada"}}}
        )
    assert text_of(result["r"]) == "hello Ada"  # type: ignore[arg-type]
    with pytest.raises(trio.WouldBlock):
        bystander.incoming.receive_nowait()


async def test_elicitation_for_a_client_without_the_capability_is_an_error(rig: Rig) -> None:
    client = await rig.client("alpha", capabilities={"sampling": {}})
    response = await client.call("ask", question="x")
    # Its instance was started without the elicitation capability: the
    # server itself knows that its client cannot be asked.
    assert "elicitation" in error_text(response).lower()


async def test_logging_reaches_the_calling_client_under_its_own_logger_and_no_bystander(
    rig: Rig,
) -> None:
    """A log message sent during a call is the caller's alone (SPEC §8.4)."""
    caller = await rig.client("alpha")
    other = await rig.client("alpha")
    assert text_of(await caller.call("log", message="disk almost full")) == "logged"
    with trio.fail_after(5):
        note = await caller.next_incoming("notifications/message")
    assert note["params"]["level"] == "warning"
    assert note["params"]["data"] == "disk almost full"
    assert note["params"]["logger"] == "testlog"
    # Anything sent to `other` for that call was queued before its own call
    # was even sent, so it would be in its queue by the time this answers.
    assert text_of(await other.call("echo", text="after")) == "after"
    leaked = []
    while True:
        try:
            leaked.append(other.incoming.receive_nowait())
        except trio.WouldBlock:
            break
    assert not [m for m in leaked if m.get("method") == "notifications/message"], leaked


async def test_aggregated_logging_names_the_server_and_resource_updates_reach_subscribers_only(
    nursery: trio.Nursery,
) -> None:
    rig = await Rig(nursery, [server_config("alpha")]).start()
    try:
        subscriber = await rig.client(None)
        idle = await rig.client(None)
        uri = "bicameral://alpha/test://greeting"
        answer = await subscriber.request("resources/subscribe", {"uri": uri})
        assert answer.get("result") == {}, answer
        await subscriber.call("alpha__touch", uri="test://greeting")
        await subscriber.call("alpha__log", message="m")
        with trio.fail_after(5):
            updated = await subscriber.next_incoming("notifications/resources/updated")
            assert updated["params"]["uri"] == uri
            note = await subscriber.next_incoming("notifications/message")
        assert note["params"]["logger"] == "alpha/testlog"
        # `idle` subscribed to nothing and called nothing: its own log message
        # (a call of its own, answered after anything queued for it before)
        # comes with no update before it.
        await idle.call("alpha__log", message="mine")
        with trio.fail_after(5):
            seen = [(await idle.incoming.receive())["method"]]
            while seen[-1] != "notifications/message":
                seen.append((await idle.incoming.receive())["method"])
        assert "notifications/resources/updated" not in seen
    finally:
        await rig.stop()


async def test_malformed_input_gets_errors_and_the_session_goes_on(rig: Rig) -> None:
    client = await rig.client("alpha")
    await client.stream.send_all(b"this is not json\n")
    assert (await client.incoming.receive())["error"]["code"] == -32700
    await client.send({"id": [1, 2], "method": "tools/call", "params": {}})
    assert (await client.incoming.receive())["error"]["code"] == -32600
    await client.send({"id": 5, "method": "tools/call", "params": [1]})
    assert (await client.incoming.receive())["error"]["code"] == -32602
    await client.send({"method": "notifications/cancelled", "params": {"requestId": {"x": 1}}})
    await client.send({"id": {"no": "such request"}, "result": {}})
    await client.stream.send_all(b"42\n")
    assert (await client.incoming.receive())["error"]["code"] == -32600
    assert text_of(await client.call("echo", text="still here")) == "still here"
