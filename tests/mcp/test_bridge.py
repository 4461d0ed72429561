"""End to end: the SDK's own client, through `bicameral mcp`, to a real daemon.

Each test has its own short state directory and daemon (tests/mcp/conftest.py);
the teardown stops the daemon and fails the test if any upstream server
process outlived it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import mcp_types as types
import psutil
import pytest
import trio
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from tests.mcp._support import INITIALIZE, sampler, session, text, wait_until
from tests.mcp.conftest import BICAMERAL, McpHome


async def test_the_bridge_starts_the_daemon_and_stands_in_for_one_server(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    assert mcp_home.descriptor() is None
    async with session(mcp_home, "alpha") as client:
        assert mcp_home.descriptor() is not None  # auto-started
        info = client.server_info
        assert info is not None and info.name == "alpha" and info.version == "1.2.3"
        assert client.instructions == "Test server alpha for bicameral."
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "add", "pid", "slow", "sample"} <= tools
        assert text(await client.call_tool("echo", {"text": "hi"})) == "hi"
        assert text(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
        resource = await client.read_resource("test://greeting")
        content = resource.contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert content.text == "hello from alpha"
        prompt = await client.get_prompt("greet", {"who": "Ada"})
        message = prompt.messages[0].content
        assert isinstance(message, types.TextContent) and "Ada" in message.text
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        result = await client.call_tool(
            "slow", {"steps": 3, "delay": 0.01}, progress_callback=on_progress
        )
        assert text(result) == "done after 3 steps"
        assert progress == [1.0, 2.0, 3.0]


async def test_aggregated_mode_names_every_servers_tools_resources_and_prompts(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha"), "beta": mcp_home.test_server("beta")}
    )
    async with session(mcp_home) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"alpha__echo", "beta__echo", "bicameral__status", "bicameral__restart"} <= tools
        assert text(await client.call_tool("beta__echo", {"text": "b"})) == "b"
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert resources == {
            "bicameral://alpha/test://greeting",
            "bicameral://beta/test://greeting",
        }
        read = await client.read_resource("bicameral://alpha/test://greeting")
        content = read.contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert content.text == "hello from alpha"
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"alpha__greet", "beta__greet"}
        status = json.loads(text(await client.call_tool("bicameral__status", {})))
        assert {s["state"] for s in status["servers"].values()} == {"ready"}
        assert status["tree"]["name"] == "bicameral"


async def test_two_then_four_concurrent_clients_share_one_warm_upstream(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    assert mcp_home.cli("daemon", "start").returncode == 0
    # Servers start once the daemon is ready, in the background: wait for it.
    warm = [p.pid for p in wait_until(mcp_home.upstreams)]
    assert len(warm) == 1
    for clients in (2, 4):
        pids: list[int] = []
        echoes: dict[str, str] = {}

        async def one_client(i: int, pids: list[int], echoes: dict[str, str]) -> None:
            async with session(mcp_home, "alpha") as client:
                pids.append(int(text(await client.call_tool("pid", {}))))
                for j in range(5):
                    word = f"client{i}-call{j}"
                    echoes[word] = text(await client.call_tool("echo", {"text": word}))

        async with trio.open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(one_client, i, pids, echoes)
        assert pids == warm * clients  # the same warm upstream, initialized once
        assert echoes == {word: word for word in echoes} and len(echoes) == 5 * clients
        assert [p.pid for p in mcp_home.upstreams()] == warm  # M servers, not N x M


async def test_concurrent_calls_from_two_clients_each_get_their_own_response(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    async with session(mcp_home, "alpha") as one, session(mcp_home, "alpha") as two:
        got: dict[str, str] = {}

        async def call(client: ClientSession, word: str) -> None:
            got[word] = text(await client.call_tool("echo", {"text": word}))

        async with trio.open_nursery() as nursery:
            for i in range(25):
                # Both SDK clients number their requests 1, 2, 3...: the same ids.
                nursery.start_soon(call, one, f"one-{i}")
                nursery.start_soon(call, two, f"two-{i}")
        assert got == {word: word for word in got} and len(got) == 50


async def test_an_upstream_killed_mid_session_fails_the_call_in_flight_then_comes_back(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    async with session(mcp_home, "alpha") as client:
        old = int(text(await client.call_tool("pid", {})))
        failure: list[BaseException] = []
        started, failed = trio.Event(), trio.Event()

        async def long_call() -> None:
            async def on_progress(value: float, total: float | None, msg: str | None) -> None:
                started.set()

            try:
                await client.call_tool(
                    "slow", {"steps": 100, "delay": 0.1}, progress_callback=on_progress
                )
            except Exception as exc:
                failure.append(exc)
                failed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_call)
            await started.wait()
            os.kill(old, signal.SIGKILL)
            with trio.fail_after(2):
                await failed.wait()
        assert "'alpha'" in str(failure[0]) and "signal 9" in str(failure[0])
        new = int(text(await client.call_tool("pid", {})))
        assert new != old
        assert text(await client.call_tool("echo", {"text": "back"})) == "back"


async def test_sampling_reaches_the_client_whose_call_asked_for_it(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    asked: dict[str, list[str]] = {"a": [], "b": []}

    async with (
        session(mcp_home, "alpha", sampling_callback=sampler("a", asked, "a!")) as a,
        session(mcp_home, "alpha", sampling_callback=sampler("b", asked, "b!")) as b,
    ):
        assert text(await b.call_tool("sample", {"prompt": "for b"})) == "b!"
        assert text(await a.call_tool("sample", {"prompt": "for a"})) == "a!"
    assert asked == {"a": ["for a"], "b": ["for b"]}


async def test_elicitation_and_logging_pass_through_the_bridge(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.test_server("alpha")})
    logged = trio.Event()
    messages: list[types.LoggingMessageNotificationParams] = []

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert params.message == "your name?"
        return types.ElicitResult(action="accept", content={"name": "Grace"})

    async def logging_callback(params: types.LoggingMessageNotificationParams) -> None:
        messages.append(params)
        logged.set()

    async with session(
        mcp_home, "alpha", elicitation_callback=elicitation, logging_callback=logging_callback
    ) as client:
        assert text(await client.call_tool("ask", {"question": "your name?"})) == "hello Grace"
        assert text(await client.call_tool("log", {"message": "careful"})) == "logged"
        with trio.fail_after(5):
            await logged.wait()
    assert [(m.level, m.logger, m.data) for m in messages] == [("warning", "testlog", "careful")]


async def test_kill_9_of_the_daemon_leaves_no_upstream_behind(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.light_server("alpha"), "beta": mcp_home.light_server("beta")}
    )
    assert mcp_home.cli("daemon", "start").returncode == 0
    async with session(mcp_home) as client:
        await client.call_tool("alpha__pid", {})
    upstreams = mcp_home.upstreams()
    assert len(upstreams) == 2
    os.kill(mcp_home.daemon_pid(), signal.SIGKILL)
    _, alive = psutil.wait_procs(upstreams, timeout=5)
    assert not alive


async def test_a_broken_server_beside_a_good_one(mcp_home: McpHome) -> None:
    mcp_home.configure(
        {
            "broken": {"command": "/nonexistent/bicameral-missing-binary"},
            "alpha": mcp_home.light_server("alpha"),
        }
    )
    async with session(mcp_home, "alpha") as client:
        assert text(await client.call_tool("echo", {"text": "ok"})) == "ok"
    status = json.loads(mcp_home.cli("daemon", "status", "--json").stdout)
    assert status["status"] == "running"
    adapters = {c["name"]: c for c in status["tree"]["children"] if c["name"] == "adapters"}
    children = {c["name"]: c for c in adapters["adapters"]["children"]}
    assert children["alpha"]["started_value"]["state"] == "ready"
    broken = children["broken"]["started_value"]
    assert broken["state"] in ("restarting", "failed")
    assert "cannot start" in broken["last_error"]
    # A client of the broken server itself learns why at initialize.
    with pytest.RaisesGroup(
        pytest.RaisesExc(MCPError, match="cannot start"), flatten_subgroups=True
    ):
        async with session(mcp_home, "broken"):
            pass
    # A server that is not configured at all is refused at attach, in one line.
    result = subprocess.run(  # noqa: ASYNC221 (the test waits for the bridge on purpose)
        [BICAMERAL, *mcp_home.bridge_argv("nope")],
        input=b"",
        capture_output=True,
        env=mcp_home.env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1
    assert "no MCP server named 'nope'" in result.stderr.decode()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_the_bridge_exits_0_when_its_client_closes_stdin(mcp_home: McpHome, transport: str) -> None:
    # unix: the bridge passes its stdio to the daemon; tcp: it relays bytes.
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    assert mcp_home.cli("daemon", "start", "--transport", transport).returncode == 0
    proc = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv("alpha")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mcp_home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
    proc.stdin.flush()
    answer = json.loads(proc.stdout.readline())
    assert answer["result"]["serverInfo"]["name"] == "alpha", answer
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
    call["params"] = {"name": "echo", "arguments": {"text": transport}}
    proc.stdin.write(json.dumps(call).encode() + b"\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["result"]["content"][0]["text"] == transport
    proc.stdin.close()
    assert proc.wait(timeout=3) == 0
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_the_bridge_exits_1_with_a_message_when_the_daemon_goes_away(
    mcp_home: McpHome, transport: str
) -> None:
    # tcp: the relay (Windows' only way) notices the daemon's end while idle.
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    if transport == "tcp":
        assert mcp_home.cli("daemon", "start", "--transport", "tcp").returncode == 0
    proc = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv("alpha")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mcp_home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["result"] == {}
    assert mcp_home.cli("daemon", "stop").returncode == 0
    assert proc.wait(timeout=5) == 1
    stderr = proc.stderr.read().decode()
    assert stderr.count("\n") == 1 and "daemon closed the connection" in stderr
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


def test_a_daemon_the_bridge_started_leaves_no_zombie_when_it_stops(mcp_home: McpHome) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    proc = subprocess.Popen(
        [BICAMERAL, *mcp_home.bridge_argv("alpha")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=mcp_home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["result"] == {}
        descriptor = mcp_home.descriptor()
        assert descriptor is not None
        daemon = psutil.Process(descriptor["pid"])
        assert daemon.ppid() == proc.pid  # the bridge spawned it
        proc.send_signal(signal.SIGSTOP)  # a bridge that cannot reap right now
        assert mcp_home.cli("daemon", "stop").returncode == 0
        # Gone for good, not a zombie waiting for its parent's wait().
        with pytest.raises(psutil.NoSuchProcess):
            daemon.wait(timeout=5)
            psutil.Process(descriptor["pid"])
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()


async def test_a_reload_adds_a_server_leaves_the_unchanged_one_running_and_tells_clients(
    mcp_home: McpHome,
) -> None:
    mcp_home.configure({"alpha": mcp_home.light_server("alpha")})
    notices = 0
    changed = trio.Event()

    async def on_message(message: Any) -> None:
        nonlocal notices, changed
        if isinstance(message, types.ToolListChangedNotification):
            notices += 1
            changed.set()

    async with session(mcp_home, message_handler=on_message) as client:
        before = int(text(await client.call_tool("alpha__pid", {})))
        mcp_home.configure(
            {"alpha": mcp_home.light_server("alpha"), "beta": mcp_home.light_server("beta")}
        )
        os.kill(mcp_home.daemon_pid(), signal.SIGHUP)
        tools: set[str] = set()
        with trio.fail_after(60):  # a failure bound, not a margin
            while "beta__echo" not in tools:
                await changed.wait()  # the new server, then its tools once it is up
                changed = trio.Event()
                tools = {t.name for t in (await client.list_tools()).tools}
        assert notices >= 1 and "alpha__echo" in tools
        assert text(await client.call_tool("beta__echo", {"text": "new"})) == "new"
        # alpha's spec compared equal across the reload: the same process serves it.
        assert int(text(await client.call_tool("alpha__pid", {}))) == before


async def test_bridges_started_together_converge_on_one_daemon(mcp_home: McpHome) -> None:
    # As an MCP client does at launch: one bridge per server, all at once.
    mcp_home.configure(
        {"alpha": mcp_home.light_server("alpha"), "beta": mcp_home.light_server("beta")}
    )
    pids: dict[str, int] = {}

    async def one(i: int, server: str) -> None:
        async with session(mcp_home, server) as client:
            pids[f"{server}{i}"] = int(text(await client.call_tool("pid", {})))

    async with trio.open_nursery() as nursery:
        for i, server in enumerate(["alpha", "beta", "alpha", "beta"]):
            nursery.start_soon(one, i, server)
    assert pids["alpha0"] == pids["alpha2"] and pids["beta1"] == pids["beta3"]
    assert len(mcp_home.upstreams()) == 2
    daemons = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "serve" in (p.info["cmdline"] or [])
        and str(mcp_home.path) in " ".join(p.info["cmdline"])
    ]
    assert len(daemons) == 1


async def test_an_unknown_or_disabled_server_is_an_mcp_error_at_initialize(
    mcp_home: McpHome,
) -> None:
    """SPEC §8.7: the client itself learns why (clients hide the bridge's stderr)."""
    mcp_home.configure(
        {
            "alpha": mcp_home.light_server("alpha"),
            "off": {**mcp_home.light_server("off"), "enabled": False},
        }
    )
    for name, why in (("nope", "no MCP server named 'nope'"), ("off", "'off' is disabled")):
        with pytest.RaisesGroup(
            pytest.RaisesExc(MCPError, match=f"{why}.*configured: alpha"),
            flatten_subgroups=True,
        ):
            async with session(mcp_home, name):
                pass
