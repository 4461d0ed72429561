"""The ``io.modelcontextprotocol/tasks`` extension (SEP-2663) and the ``tasks-*`` fixtures.

The server decides which calls become tasks: a call to a task-supporting tool
from a request that declares the extension (per request, in
``_meta.clientCapabilities.extensions``, 2026-07-28) answers a flat
``CreateTaskResult`` at once and runs in the background; ``tasks/get`` shows
it (the result or error inlined once terminal, ``inputRequests`` while it
waits for the client), ``tasks/update`` answers its input requests (a subset
at a time if need be) and ``tasks/cancel`` stops it. Without the extension an
``optional`` tool runs synchronously and a ``required`` one is refused with
-32021, as are the ``tasks/*`` methods.

Tasks live in memory for ``TTL_MS`` after their last change; at most
``MAX_TASKS`` are kept (the oldest finished ones make room; when every one is
still running a new call is refused). Ids are unguessable random tokens.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from pydantic import Field
from scenarios import mrtr

TASKS = "io.modelcontextprotocol/tasks"
TTL_MS = 300_000
POLL_MS = 250
MAX_TASKS = 256
TERMINAL = frozenset({"completed", "failed", "cancelled"})
MODERN = frozenset({"2026-07-28"})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Task:
    id: str
    status: str = "working"
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    touched: float = field(default_factory=time.monotonic)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pending: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    wake: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def set(self, status: str) -> None:
        self.status, self.updated, self.touched = status, _now(), time.monotonic()

    def envelope(self) -> dict[str, Any]:
        return {
            "taskId": self.id,
            "status": self.status,
            "createdAt": self.created,
            "lastUpdatedAt": self.updated,
            "ttlMs": TTL_MS,
            "pollIntervalMs": POLL_MS,
        }

    def detailed(self) -> dict[str, Any]:
        body = self.envelope()
        if self.status == "input_required":
            body["inputRequests"] = dict(self.pending)
        if self.status == "completed" and self.result is not None:
            body["result"] = self.result
        if self.status == "failed" and self.error is not None:
            body["error"] = self.error
        return body


class TaskRun:
    """What a running task's body sees: a way to ask the client for input."""

    def __init__(self, task: Task) -> None:
        self._task = task

    async def ask(self, requests: dict[str, Any]) -> dict[str, Any]:
        """Park the task in ``input_required`` until every request is answered."""
        task = self._task
        task.pending.update(requests)
        task.set("input_required")
        while any(key in task.pending for key in requests):
            task.wake = anyio.Event()
            await task.wake.wait()
        return {key: task.answers.pop(key) for key in requests}


Body = Callable[[TaskRun], Awaitable[types.CallToolResult]]


class TaskStore:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._group: TaskGroup | None = None

    def bind(self, group: TaskGroup) -> None:
        self._group = group

    def _purge(self) -> None:
        horizon = time.monotonic() - TTL_MS / 1000
        for key in [
            k for k, t in self._tasks.items() if t.status in TERMINAL and t.touched < horizon
        ]:
            del self._tasks[key]
        if len(self._tasks) >= MAX_TASKS:
            done = sorted(
                (t for t in self._tasks.values() if t.status in TERMINAL), key=lambda t: t.touched
            )
            for old in done[: len(self._tasks) - MAX_TASKS + 1]:
                del self._tasks[old.id]

    def start(self, body: Body) -> Task:
        if self._group is None:
            raise MCPError(
                code=types.INTERNAL_ERROR, message="Tasks are not available in this process"
            )
        self._purge()
        if len(self._tasks) >= MAX_TASKS:
            raise MCPError(
                code=types.INTERNAL_ERROR, message=f"Too many running tasks (at most {MAX_TASKS})"
            )
        task = Task(id=secrets.token_urlsafe(16))
        self._tasks[task.id] = task
        self._group.start_soon(self._run, task, body)
        return task

    async def _run(self, task: Task, body: Body) -> None:
        with task.scope:
            try:
                result = await body(TaskRun(task))
            except MCPError as exc:
                task.error = exc.error.model_dump(mode="json", by_alias=True, exclude_none=True)
                task.set("failed")
                return
            except Exception as exc:  # a crashing body is the task's failure, not the server's
                task.error = {"code": types.INTERNAL_ERROR, "message": f"Task failed: {exc}"}
                task.set("failed")
                return
            task.result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            task.set("completed")

    def get(self, task_id: str) -> Task:
        self._purge()
        task = self._tasks.get(task_id)
        if task is None:
            raise MCPError(
                code=types.INVALID_PARAMS, message="Unknown task", data={"taskId": task_id}
            )
        return task

    def update(self, task_id: str, responses: dict[str, Any]) -> None:
        task = self.get(task_id)
        for key, value in responses.items():
            if key in task.pending:  # answers to nothing asked are ignored
                del task.pending[key]
                task.answers[key] = value
        if task.status == "input_required" and not task.pending:
            task.set("working")
        task.touched = time.monotonic()
        task.wake.set()

    def cancel(self, task_id: str) -> None:
        task = self.get(task_id)
        if task.status not in TERMINAL:  # cancelling a finished task is a no-op ack
            task.pending.clear()
            task.set("cancelled")
            task.scope.cancel()


class TaskParams(types.RequestParams):
    task_id: str


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class TaskTool:
    """A task-supporting tool: its support level, an optional synchronous
    gathering round before the task (MRTR then task), and the task's body."""

    support: Literal["optional", "required"]
    body: Callable[[TaskRun, dict[str, Any]], Awaitable[types.CallToolResult]]
    gather: (
        Callable[[types.CallToolRequestParams], types.InputRequiredResult | dict[str, Any]] | None
    ) = None


def _check_name_header(ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
    """SEP-2663: ``Mcp-Name`` carries the task id on HTTP (stdio has no headers)."""
    headers = getattr(ctx.request, "headers", None)
    if headers is None:
        return
    name = headers.get("mcp-name")
    if name is None or name.strip() != task_id:
        raise MCPError(
            code=types.HEADER_MISMATCH,
            message="The Mcp-Name header does not match params.taskId",
            data={"header": "Mcp-Name", "expected": task_id, "actual": name},
        )


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    caps = ctx.session.client_capabilities
    return (
        ctx.protocol_version in MODERN
        and caps is not None
        and caps.extensions is not None
        and TASKS in caps.extensions
    )


class TasksExtension(Extension):
    identifier = TASKS

    def __init__(self, store: TaskStore, tools: dict[str, TaskTool]) -> None:
        self.store = store
        self.task_tools = tools

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self._get),
            MethodBinding("tasks/update", TaskUpdateParams, self._update),
            MethodBinding("tasks/cancel", TaskParams, self._cancel),
        )

    def _admit(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> None:
        _check_name_header(ctx, params.task_id)
        require_client_extension(ctx, TASKS)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        self._admit(ctx, params)
        return {"resultType": "complete", **self.store.get(params.task_id).detailed()}

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams
    ) -> HandlerResult:
        self._admit(ctx, params)
        self.store.update(params.task_id, params.input_responses)
        return {"resultType": "complete"}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        self._admit(ctx, params)
        self.store.cancel(params.task_id)
        return {"resultType": "complete"}

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        tool = self.task_tools.get(params.name)
        if tool is None:
            return await call_next(ctx)
        if not _declared(ctx):
            if tool.support == "required":
                # Refused even for a handshake-era client that declared the
                # extension: CreateTaskResult exists on the 2026-07-28 wire only.
                raise MCPError(
                    code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                    message=f"{params.name} runs only as a task: declare the {TASKS} extension",
                    data={"requiredCapabilities": {"extensions": {TASKS: {}}}},
                )
            return await call_next(ctx)
        args = dict(params.arguments or {})
        if tool.gather is not None:
            gathered = tool.gather(params)
            if isinstance(gathered, types.InputRequiredResult):
                return gathered
            args.update(gathered)

        async def body(run: TaskRun) -> types.CallToolResult:
            return await tool.body(run, args)

        return {"resultType": "task", **self.store.start(body).envelope()}


# -- the fixtures ---------------------------------------------------------------------

CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean"}},
    "required": ["confirm"],
}


def greet(name: str) -> str:
    """Greets synchronously (never a task)"""
    return f"Hello, {name}!"


async def slow_compute(seconds: float = 1.0, label: str = "") -> str:
    """Sleeps `seconds` then answers; a task when the client declares the tasks extension"""
    await anyio.sleep(max(0.0, min(seconds, 3600.0)))
    return f"Computed {label or 'result'} after {seconds} s"


async def _slow_compute(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    return mrtr.text(
        await slow_compute(float(args.get("seconds", 1.0)), str(args.get("label", "")))
    )


def failing_job() -> str:
    """Always ends in a tool execution error (task support required)"""
    raise RuntimeError("failing_job failed on purpose")


async def _failing_job(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    await anyio.sleep(1.0)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="failing_job failed on purpose")],
        is_error=True,
    )


def protocol_error_job() -> str:
    """Always ends in a protocol-level error"""
    raise MCPError(code=types.INTERNAL_ERROR, message="protocol_error_job failed on purpose")


async def _protocol_error_job(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    await anyio.sleep(0.1)
    protocol_error_job()
    raise AssertionError("unreachable")


def confirm_delete(filename: str) -> str:
    """Asks the client to confirm deleting `filename` (task support required)"""
    raise AssertionError("only ever run as a task")


async def _confirm_delete(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    filename = str(args.get("filename", ""))
    got = await run.ask({"confirm": mrtr.elicit(f"Delete {filename}?", CONFIRM_SCHEMA)})
    if mrtr.elicited(got["confirm"], "confirm"):
        return mrtr.text(f"Deleted {filename}")
    return mrtr.text(f"Kept {filename}")


def multi_input() -> str:
    """Asks the client two questions at once (task support required)"""
    raise AssertionError("only ever run as a task")


async def _multi_input(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    got = await run.ask(
        {
            "name": mrtr.elicit("What is your name?", mrtr.NAME_SCHEMA),
            "confirm": mrtr.elicit("Proceed?", CONFIRM_SCHEMA),
        }
    )
    name = mrtr.elicited(got["name"], "name")
    return mrtr.text(f"name={name}, confirmed={mrtr.elicited(got['confirm'], 'confirm')}")


def test_tool_with_task() -> str:
    """Asks the user's name (input_required), then greets as a task (task support required)"""
    raise AssertionError("only ever run as a task")


def _gather_name(params: types.CallToolRequestParams) -> types.InputRequiredResult | dict[str, Any]:
    answer = (params.input_responses or {}).get("user_name")
    name = None
    if answer is not None:
        name = mrtr.elicited(
            answer.model_dump(mode="json", by_alias=True, exclude_none=True), "name"
        )
    if name is None:
        return mrtr.ask({"user_name": mrtr.elicit("What is your name?", mrtr.NAME_SCHEMA)})
    return {"user_name": name}


async def _greet_task(run: TaskRun, args: dict[str, Any]) -> types.CallToolResult:
    await anyio.sleep(0.1)
    return mrtr.text(f"Hello, {args['user_name']}!")


TOOLS: dict[str, TaskTool] = {
    "slow_compute": TaskTool("optional", _slow_compute),
    "failing_job": TaskTool("required", _failing_job),
    "protocol_error_job": TaskTool("optional", _protocol_error_job),
    "confirm_delete": TaskTool("required", _confirm_delete),
    "multi_input": TaskTool("required", _multi_input),
    "test_tool_with_task": TaskTool("required", _greet_task, _gather_name),
}


def extension(store: TaskStore) -> TasksExtension:
    return TasksExtension(store, TOOLS)


def install(server: MCPServer) -> None:
    for fn in (
        greet,
        slow_compute,
        failing_job,
        protocol_error_job,
        confirm_delete,
        multi_input,
        test_tool_with_task,
    ):
        server.add_tool(fn, structured_output=False)
