"""A small MCP server for bicameral's tests, written with the official SDK.

Run as ``python testserver.py [--name NAME]``; it speaks MCP over stdio.

Tools: ``echo``, ``add``, ``pid`` (this process's pid), ``slow`` (reports
progress, then answers), ``crash`` (exits the process at once), ``hang``
(blocks the event loop, so pings go unanswered), ``sample`` (asks the client
for sampling and returns the text), ``roots`` (asks the client for its roots),
``add_tool`` (registers a tool and sends ``tools/list_changed``), ``ask``
(elicits a name from the client), ``log`` (sends a logging notification),
``touch`` (sends ``resources/updated`` for a URI), ``locate`` (its argument
``region`` is an ``x-mcp-header``, ``Mcp-Param-Region``), ``needs_sampling``
(-32021 to a client without sampling), ``sample_rounds``
(sampling as a 2026-07-28 ``input_required`` round). ``--modern-only``:
refuse the ``initialize`` handshake, as a server of that era alone does.
``--cache-hints``: its ``resources/read`` results say ``ttlMs: 5000``,
``cacheScope: "public"`` (to a client of the 2026-07-28 era).
What it observed of its client(s), for the sharing tests: ``observed``
(JSON: the client capabilities, the last ``logging/setLevel``, the notes
remembered, the subscriptions), ``remember`` (session state: keeps a note
and offers it as the resource ``note://N``), ``log_at`` (a log message at a
given level).
Resource ``test://greeting`` (subscribable); prompt ``greet``.
``TESTSERVER_PAGE_SIZE``: ``tools/list`` answers in pages of that many.
Tasks (2025-11-25): ``tasks/get`` and ``tasks/cancel`` answer for any task
id, ``tasks/list`` lists ``t-1`` and ``t-2``.

Environment: ``TESTSERVER_NO_TOOLS_IF`` names a file; when it exists at
start-up the server registers no tools (a server that comes back empty).
``TESTSERVER_FAIL_IF`` likewise makes the process exit with status 3 at once.
"""

from __future__ import annotations

import os
import sys
import time

if os.path.exists(os.environ.get("TESTSERVER_FAIL_IF", "/nonexistent")):
    print("testserver: failing on purpose", file=sys.stderr, flush=True)
    sys.exit(3)

import warnings
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resources import TextResource
from mcp.shared.exceptions import MCPError
from mcp_types import (
    EmptyResult,
    NotificationParams,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
)
from pydantic import BaseModel

name = "testserver"
if "--name" in sys.argv:  # (a --home-tag ARG is accepted and ignored)
    name = sys.argv[sys.argv.index("--name") + 1]

_hints: dict[Any, Any] = {}
if "--cache-hints" in sys.argv:  # its resources/read says: fresh for 5 s, shareable
    from mcp.server.caching import CacheHint

    _hints["resources/read"] = CacheHint(ttl_ms=5000, scope="public")
server: MCPServer = MCPServer(
    name,
    version="1.2.3",
    instructions=f"Test server {name} for bicameral.",
    log_level="WARNING",
    cache_hints=_hints,
)


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def pid() -> int:
    """This server process's pid."""
    return os.getpid()


async def slow(steps: int, delay: float, ctx: Context) -> str:
    """Report `steps` progress notifications `delay` seconds apart, then answer."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await anyio.sleep(delay)
    return f"done after {steps} steps"


def crash() -> str:
    """Exit the server process at once, mid-call."""
    os._exit(1)


async def hang() -> str:
    """Block the whole server (its event loop included) for a long time."""
    time.sleep(3600)  # noqa: ASYNC251 (deliberately blocking: pings go unanswered)
    return "unreachable"


async def sample(prompt: str, ctx: Context) -> str:
    """Ask the client to sample a message; return its text."""
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=50,
    )
    content = result.content
    return content.text if isinstance(content, TextContent) else repr(content)


async def roots(ctx: Context) -> str:
    """Ask the client for its roots; return them comma-separated."""
    result = await ctx.session.list_roots()
    return ",".join(str(root.uri) for root in result.roots)


async def add_tool(tool_name: str, ctx: Context) -> str:
    """Register a tool named `tool_name` (it echoes) and notify list_changed."""

    def dynamic(text: str) -> str:
        return f"{tool_name}:{text}"

    server.add_tool(dynamic, name=tool_name, description="added at run time")
    await ctx.session.send_tool_list_changed()
    return "added"


class Name(BaseModel):
    name: str


async def ask(question: str, ctx: Context) -> str:
    """Elicit a name from the client; return what came back."""
    result = await ctx.elicit(question, Name)
    if result.action == "accept":
        return f"hello {result.data.name}"
    return result.action


async def log(message: str, ctx: Context) -> str:
    """Send `message` to the client as a warning-level logging notification."""
    with warnings.catch_warnings():  # the SDK deprecates logging; clients still use it
        warnings.simplefilter("ignore")
        await ctx.warning(message, logger_name="testlog")
    return "logged"


async def touch(uri: str, ctx: Context) -> str:
    """Tell the client that the resource `uri` was updated."""
    await ctx.session.send_resource_updated(uri)
    return "touched"


seen: dict[str, object] = {"level": None, "notes": [], "subscriptions": []}


def needs_sampling(ctx: Context) -> str:
    """Refused with -32021 (MissingRequiredClientCapability) to a client without sampling."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=-32021,
            message="needs_sampling needs the client's sampling capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "the client declared sampling"


def locate(region: str) -> str:
    """Its `region` argument travels as the Mcp-Param-Region HTTP header too (x-mcp-header)."""
    return f"region={region}"


async def observed(ctx: Context) -> str:
    """What this process observed of its client(s), as JSON."""
    import json

    caps = ctx.session.client_capabilities
    dumped = caps.model_dump(exclude_none=True) if caps is not None else {}
    return json.dumps({**seen, "capabilities": sorted(dumped), "pid": os.getpid()})


async def remember(note: str, ctx: Context) -> str:
    """Keep `note` (session state), offered as the resource note://N."""
    notes = seen["notes"]
    assert isinstance(notes, list)
    notes.append(note)
    server.add_resource(
        TextResource(uri=f"note://{len(notes)}", name=f"note{len(notes)}", text=note)
    )
    await ctx.session.send_resource_list_changed()
    return f"note://{len(notes)}"


async def log_at(level: str, message: str, ctx: Context) -> str:
    """Send `message` as a log notification at `level`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await ctx.log(level, message, logger_name="testlog")  # type: ignore[arg-type]
    return "logged"


async def _subscribe(ctx: object, params: SubscribeRequestParams) -> EmptyResult:
    subscriptions = seen["subscriptions"]
    assert isinstance(subscriptions, list)
    subscriptions.append(str(params.uri))
    return EmptyResult()


async def _set_level(ctx: object, params: SetLevelRequestParams) -> EmptyResult:
    seen["level"] = params.level
    return EmptyResult()


server._lowlevel_server.add_request_handler(
    "resources/subscribe", SubscribeRequestParams, _subscribe
)
server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)


async def _learn_roots(ctx: Any, params: object) -> None:
    # As server-filesystem does: ask for the roots when the client is ready
    # and when they change, outside any call, and keep them.
    try:
        with warnings.catch_warnings():  # roots are deprecated in the 2026 era, not in ours
            warnings.simplefilter("ignore")
            result = await ctx.session.list_roots()
    except Exception as exc:
        seen["known_roots"] = f"error: {exc}"
        return
    seen["known_roots"] = [str(root.uri) for root in result.roots]


for _method in ("notifications/initialized", "notifications/roots/list_changed"):
    server._lowlevel_server.add_notification_handler(_method, NotificationParams, _learn_roots)

if not os.path.exists(os.environ.get("TESTSERVER_NO_TOOLS_IF", "/nonexistent")):
    for fn in (echo, add, pid, slow, crash, hang, sample, roots, add_tool, ask, log, touch):
        server.add_tool(fn)
    for fn in (observed, remember, log_at, locate, needs_sampling):
        server.add_tool(fn)
    _locate = server._tool_manager.get_tool("locate")
    assert _locate is not None
    _locate.parameters = {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
        "required": ["region"],
    }


@server.resource("test://greeting")
def greeting() -> str:
    """A fixed greeting."""
    return f"hello from {name}"


@server.prompt()
def greet(who: str) -> str:
    """Greet someone."""
    return f"Please greet {who} warmly."


_PAGE = int(os.environ.get("TESTSERVER_PAGE_SIZE") or 0)
if _PAGE:
    from mcp_types import ListToolsResult, PaginatedRequestParams

    async def _paged_tools(ctx: object, params: PaginatedRequestParams) -> ListToolsResult:
        tools = await server.list_tools()
        start = int(params.cursor or 0)
        rest = start + _PAGE < len(tools)
        return ListToolsResult(
            tools=tools[start : start + _PAGE], next_cursor=str(start + _PAGE) if rest else None
        )

    server._lowlevel_server.add_request_handler("tools/list", PaginatedRequestParams, _paged_tools)


def _task(task_id: str, status: str = "working") -> Any:
    from mcp_types import Task

    return Task(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        created_at="2026-11-30T00:00:00Z",
        last_updated_at="2026-11-30T00:00:00Z",
        ttl=60000,
    )


async def _get_task(ctx: object, params: Any) -> Any:
    from mcp_types import GetTaskResult

    return GetTaskResult(**_task(params.task_id).model_dump())


async def _cancel_task(ctx: object, params: Any) -> Any:
    from mcp_types import CancelTaskResult

    return CancelTaskResult(**_task(params.task_id, "cancelled").model_dump())


async def _list_tasks(ctx: object, params: Any) -> Any:
    from mcp_types import ListTasksResult

    return ListTasksResult(tasks=[_task("t-1"), _task("t-2", "completed")])


def _register_tasks() -> None:
    from mcp_types import CancelTaskRequestParams, GetTaskRequestParams, PaginatedRequestParams

    low = server._lowlevel_server
    low.add_request_handler("tasks/get", GetTaskRequestParams, _get_task)
    low.add_request_handler("tasks/cancel", CancelTaskRequestParams, _cancel_task)
    low.add_request_handler("tasks/list", PaginatedRequestParams, _list_tasks)


_register_tasks()


async def sample_rounds(prompt: str, ctx: Context) -> Any:
    """Sampling the 2026-07-28 way: an input_required round, answered on the retry."""
    from mcp_types import CreateMessageRequest, CreateMessageRequestParams, InputRequiredResult

    answers = ctx.input_responses or {}
    answer = answers.get("s1")
    if answer is not None:
        content = answer.content  # type: ignore[union-attr]
        return f"rounds: {content.text}"
    request = CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=50,
        )
    )
    return InputRequiredResult(input_requests={"s1": request}, request_state="round-1")


if not os.path.exists(os.environ.get("TESTSERVER_NO_TOOLS_IF", "/nonexistent")):
    server.add_tool(sample_rounds)


def _modern_only() -> None:
    """Refuse the initialize handshake (as a server of the 2026-07-28 era alone does).

    A thread reads the real stdin: an ``initialize`` request is answered
    with UNSUPPORTED_PROTOCOL_VERSION naming 2026-07-28; every other line
    goes on to the SDK server through a pipe that becomes its stdin.
    """
    import json
    import threading

    real_in = os.dup(0)
    # The SDK's stdio server may point fd 1 elsewhere once it runs (so that
    # stray prints cannot corrupt the protocol): answer on the stdout we had.
    real_out = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)

    def pump() -> None:
        with os.fdopen(real_in, "rb") as source, os.fdopen(write_end, "wb", 0) as sink:
            for line in source:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if isinstance(message, dict) and message.get("method") == "initialize":
                    refusal = {
                        "jsonrpc": "2.0",
                        "id": message.get("id"),
                        "error": {
                            "code": -32022,
                            "message": "this server speaks only 2026-07-28",
                            "data": {"supported": ["2026-07-28"], "requested": "?"},
                        },
                    }
                    os.write(real_out, json.dumps(refusal).encode() + b"\n")
                    continue
                sink.write(line)

    threading.Thread(target=pump, daemon=True).start()


if __name__ == "__main__":
    if "--modern-only" in sys.argv:
        _modern_only()
    server.run()
