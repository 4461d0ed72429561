"""An outside project's tests against a real daemon, with bicameral's fixtures only.

Each test records what it saw in $RECORD (one JSON line) so the test that runs
this file can check afterwards that nothing was left behind.
"""

import json
import os
import sys

import pytest
import trio

SERVER = os.environ["TESTSERVER"]


def record(daemon, **extra):
    with open(os.environ["RECORD"], "a") as f:
        line = {"home": str(daemon.home), "pid": daemon.pid, "socket": daemon.socket_path}
        f.write(json.dumps({**line, **extra}) + "\n")


def test_daemon_answers(bicameral_daemon):
    assert bicameral_daemon.call("system.version")["protocol_version"] == "1"
    with bicameral_daemon.client() as client:
        health = client.call("system.health")
    assert health["status"] == "ok"
    assert health["pid"] == bicameral_daemon.pid
    record(bicameral_daemon)


@pytest.mark.bicameral_config({"echo": {"command": sys.executable, "args": [SERVER]}})
@pytest.mark.trio
async def test_configured_server_through_the_bridge(bicameral_daemon):
    from mcp import ClientSession, StdioServerParameters, stdio_client

    argv = bicameral_daemon.bridge_argv("echo")
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=bicameral_daemon.env)
    with trio.fail_after(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("echo", {"text": "hello"})
            upstream = int((await session.call_tool("pid", {})).content[0].text)
    assert result.content[0].text == "hello"
    [adapter] = bicameral_daemon.call("adapters.list")
    assert adapter["name"] == "echo"
    record(bicameral_daemon, upstream=upstream)


def test_failure_shows_the_daemon_log(bicameral_daemon):
    record(bicameral_daemon)
    assert bicameral_daemon.call("system.version")["daemon_version"] == "no such version"


def test_start_failure_shows_why(bicameral_daemon):
    bicameral_daemon.configure(text='[mcp.servers.typo]\ncomand = "x"\n')
    bicameral_daemon.start()
