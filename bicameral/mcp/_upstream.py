"""Upstream MCP servers: one instance's run, and the state clients share.

One `Upstream` per configured server lives in the plugin's `Registry` for the
daemon's whole life (across restarts of its server and reloads of the
configuration), so MCP client sessions attached to it keep their place.

`run_instance` runs one instance of the server, as the ``server`` child of
the server's `ServerTree` (``bicameral.mcp._adapter``): it launches the
command with `open_process_group` (own process group, parent-death signal,
the group stopped on exit), speaks MCP to it with the SDK's `ClientSession`,
initializes it, caches its tools, resources, resource templates and
prompts, follows its ``notifications/*/list_changed``, and pings it so a
hung server is noticed. When the instance ends on its own it raises
`ServerExited` with the reason; the supervisor restarts it (backoff,
intensity) or gives up. There is no restart loop here.

The live state (``ready | degraded | starting | restarting | failed |
stopped``, pid, tool count, last error) is the server's ``started_value``
in the tree.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.shared.exceptions import MCPError

from bicameral.mcp._adapter import ServerExited
from bicameral.mcp._common import LIST_METHODS
from bicameral.mcp._dispatcher import LeanDispatcher
from bicameral.mcp._spawn import SpawnError, spawn_server
from bicameral.mcp._state import Instance, Live, Upstream
from bicameral.supervisor import current_child

if TYPE_CHECKING:
    pass

__all__ = ["run_instance"]

logger = logging.getLogger("bicameral.mcp")

#: How long the first initialize + list may take (``npx`` may download first).
STARTUP_TIMEOUT = 60.0

CONNECTION_CLOSED = types.CONNECTION_CLOSED
INVALID_REQUEST = types.INVALID_REQUEST


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


def ping_interval() -> float:
    """Seconds between liveness pings (``BICAMERAL_MCP_PING_INTERVAL``, default 15)."""
    return _env_float("BICAMERAL_MCP_PING_INTERVAL", 15.0)


def ping_timeout() -> float:
    """Seconds a ping may take (``BICAMERAL_MCP_PING_TIMEOUT``, default 10); two misses = hung."""
    return _env_float("BICAMERAL_MCP_PING_TIMEOUT", 10.0)


_CAPABILITY_FOR = {
    "tools": "tools",
    "resources": "resources",
    "resource_templates": "resources",
    "prompts": "prompts",
}


def _dump(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return result


async def _list_all(
    dispatcher: LeanDispatcher, kind: str
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item of one list, and the server's page sizes (clients get the same pages)."""
    method, key = LIST_METHODS[kind]
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(1000):  # a server that pages forever is not our problem
        params = {"cursor": cursor} if cursor else None
        page = await dispatcher.send_raw_request(method, params)
        got = page.get(key) or []
        items.extend(got)
        sizes.append(len(got))
        cursor = page.get("nextCursor")
        if not cursor:
            break
    return items, sizes


async def _list_everything(
    dispatcher: LeanDispatcher, capabilities: Mapping[str, Any]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[int]]]:
    lists: dict[str, list[dict[str, Any]]] = {}
    pages: dict[str, list[int]] = {}
    for kind in LIST_METHODS:
        lists[kind], pages[kind] = [], []
        if _CAPABILITY_FOR[kind] in capabilities:
            try:
                lists[kind], pages[kind] = await _list_all(dispatcher, kind)
            except MCPError as exc:
                if exc.code != types.METHOD_NOT_FOUND:
                    raise
    return lists, pages


class _Callbacks:
    """The SDK session's callbacks, routed to the instance's clients."""

    def __init__(
        self, upstream: Upstream, instance: Instance, refresh: Callable[[str], None]
    ) -> None:
        self.upstream = upstream
        self.instance = instance
        self.refresh = refresh

    def session_kwargs(self) -> dict[str, Any]:
        """The callbacks for the capabilities the instance's clients have, and no others.

        The SDK declares a client capability for each callback it is given:
        the server sees exactly what its clients can do (docs/mcp.md).
        """
        caps = self.instance.key.caps
        kwargs: dict[str, Any] = {"message_handler": self.message}
        if "sampling" in caps:
            kwargs["sampling_callback"] = self.sampling
        if "elicitation" in caps:
            kwargs["elicitation_callback"] = self.elicitation
        if "roots" in caps:
            kwargs["list_roots_callback"] = self.list_roots
        return kwargs

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        raw = await self.upstream.client_request(
            self.instance, "sampling/createMessage", "sampling", _dump(params)
        )
        if isinstance(raw, types.ErrorData):
            return raw
        if isinstance(raw.get("content"), list):
            return types.CreateMessageResultWithTools.model_validate(raw)
        return types.CreateMessageResult.model_validate(raw)

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        raw = await self.upstream.client_request(
            self.instance, "elicitation/create", "elicitation", _dump(params)
        )
        if isinstance(raw, types.ErrorData):
            return raw
        return types.ElicitResult.model_validate(raw)

    async def list_roots(
        self, context: ClientRequestContext
    ) -> types.ListRootsResult | types.ErrorData:
        raw = await self.upstream.client_request(self.instance, "roots/list", "roots", {})
        if isinstance(raw, types.ErrorData):
            return raw
        return types.ListRootsResult.model_validate(raw)

    async def message(self, message: Any) -> None:
        if isinstance(message, Exception):
            logger.warning(
                "MCP server %r sent something unreadable: %r", self.upstream.name, message
            )
            return
        if isinstance(message, types.ToolListChangedNotification):
            self.refresh("tools")
        elif isinstance(message, types.ResourceListChangedNotification):
            self.refresh("resources")
            self.refresh("resource_templates")
        elif isinstance(message, types.PromptListChangedNotification):
            self.refresh("prompts")
        elif isinstance(
            message,
            types.LoggingMessageNotification
            | types.ResourceUpdatedNotification
            | types.TaskStatusNotification,
        ):
            dumped = _dump(message)
            self.upstream.server_event(self.instance, dumped["method"], dumped.get("params") or {})


class _Exit(Exception):
    """The server's session ended; the message says why."""


async def _read_stderr(
    stream: anyio.abc.ByteReceiveStream,
    name: str,
    tail: collections.deque[str],
    done: anyio.Event,
) -> None:
    """Log the server's stderr, keeping the last lines for an exit message.

    Sets `done` at end of stream, so the exit message can wait for the last
    lines: a server's dying words often arrive after its exit status does.
    """
    log = logging.getLogger(f"bicameral.mcp.server.{name}")
    buffer = b""
    try:
        while True:
            chunk = await stream.receive(65536)
            lines = (buffer + chunk).split(b"\n")
            buffer = lines.pop()[-4096:]
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    tail.append(line)
                    log.info("%s", line)
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return
    finally:
        done.set()


# How long an exit message waits for the rest of stderr. Bounded because a
# grandchild that outlives the server may hold the pipe open.
_STDERR_DRAIN = 0.5


def _exit_reason(returncode: int | None, tail: collections.deque[str]) -> str:
    if returncode is None:
        what = "closed its stdout"
    elif returncode < 0:
        what = f"was killed by signal {-returncode}"
    else:
        what = f"exited with status {returncode}"
    if tail:
        what += f" (stderr: {tail[-1][:300]})"
    return what


async def _session(upstream: Upstream, instance: Instance, prespawned: Any = None) -> None:
    """Run the server once: spawn, initialize, list, serve, watch.

    Returns normally only when the adapter is asked to stop; raises `_Exit`
    (its message says why) when the server exits, hangs or fails to start.
    """
    stopping = current_child().stopping
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        if prespawned is None:
            prespawned = await spawn_server(upstream.config)
        elif isinstance(prespawned, SpawnError):
            raise prespawned
    except SpawnError as exc:
        raise _Exit(str(exc)) from None
    process_cm, proc = prespawned
    # Shown (and reachable by a stop of the whole daemon) from its spawn on,
    # not only once it has answered `initialize`.
    instance.pid = proc.pid
    upstream.publish()
    outcome: list[str | None] = []
    live: Live | None = None
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pending: set[str] = set()
        wake = anyio.Event()

        def refresh(kind: str) -> None:
            pending.add(kind)
            wake.set()

        def lost() -> None:
            if live is not None:
                upstream._detach(instance, live)

        finisher: list[Callable[[str | None], None]] = []

        def fatal(reason: str) -> None:
            # The server broke the protocol past repair: end this instance.
            if finisher:
                finisher[0](reason)

        dispatcher = LeanDispatcher(
            proc.stdout,
            proc.stdin,
            on_eof=lost,
            max_frame=upstream.max_frame,
            on_fatal=fatal,
            name=upstream.name if instance.primary else f"{upstream.name}/{instance.name}",
        )
        callbacks = _Callbacks(upstream, instance, refresh)
        session = ClientSession(
            **callbacks.session_kwargs(),
            client_info=types.Implementation(name="bicameral", version=_version()),
            dispatcher=dispatcher,
        )
        live = Live(dispatcher, session, proc.pid)
        async with anyio.create_task_group() as tg:

            def finish(reason: str | None) -> None:
                if not outcome:
                    outcome.append(reason)
                tg.cancel_scope.cancel()

            finisher.append(finish)

            async def drain_stderr() -> None:
                with anyio.move_on_after(_STDERR_DRAIN):
                    await stderr_done.wait()

            async def watch_exit() -> None:
                returncode = await proc.wait()
                await drain_stderr()
                finish(_exit_reason(returncode, tail))

            async def watch_stop() -> None:
                await stopping.wait()
                finish(None)

            async def watch_pings() -> None:
                misses = 0
                while True:
                    await anyio.sleep(ping_interval())
                    with anyio.move_on_after(ping_timeout()) as scope:
                        with contextlib.suppress(MCPError):
                            await session.send_ping()
                    misses = misses + 1 if scope.cancelled_caught else 0
                    if misses >= 2:
                        finish(f"stopped answering pings ({misses} missed)")
                        return

            async def follow_lists() -> None:
                nonlocal wake
                while True:
                    await wake.wait()
                    wake = anyio.Event()
                    kinds = list(pending)
                    pending.clear()
                    for kind in kinds:
                        try:
                            items, sizes = await _list_all(dispatcher, kind)
                        except MCPError as exc:
                            logger.warning(
                                "MCP server %r: re-listing %s failed: %s", upstream.name, kind, exc
                            )
                            continue
                        instance.pages[kind] = sizes
                        upstream._update_list(instance, kind, items)

            stderr_done = anyio.Event()
            tg.start_soon(_read_stderr, proc.stderr, upstream.name, tail, stderr_done)
            tg.start_soon(watch_exit)
            tg.start_soon(watch_stop)
            async with session:
                init_raw: dict[str, Any] | None = None
                try:
                    with anyio.fail_after(STARTUP_TIMEOUT):
                        init = _dump(await session.initialize())
                        lists, pages = await _list_everything(
                            dispatcher, init.get("capabilities") or {}
                        )
                        init_raw = init
                except TimeoutError:
                    finish(f"did not initialize within {STARTUP_TIMEOUT:g} s")
                    init_raw = None
                except MCPError as exc:
                    if exc.code == CONNECTION_CLOSED:
                        with anyio.move_on_after(1.0):
                            await proc.wait()
                        await drain_stderr()
                        finish(_exit_reason(proc.returncode, tail))
                    else:
                        finish(f"initialize failed: {exc.message}")
                    init_raw = None
                if init_raw is None:
                    # finish() cancelled the task group: this raises, and the
                    # `finally` below turns the outcome into `_Exit`. (A bare
                    # `return` here would skip that and end as a normal return.)
                    await anyio.sleep_forever()
                assert init_raw is not None
                # What its clients had asked of the process before this one.
                for method, params in upstream.restored(instance):
                    with contextlib.suppress(MCPError):
                        await dispatcher.send_raw_request(method, params)
                instance.pages = pages
                upstream._go_live(instance, live, init_raw, lists)
                if instance.generations > 1:
                    upstream.tell_restored(instance, instance.exit_reason)
                logger.info(
                    "MCP server %r%s ready: pid %d, %d tools",
                    upstream.name,
                    "" if instance.primary else f" (instance {instance.name})",
                    proc.pid,
                    len(lists["tools"]),
                )
                tg.start_soon(watch_pings)
                tg.start_soon(follow_lists)
                await anyio.sleep_forever()
    finally:
        reason = outcome[0] if outcome else None
        if live is not None:
            upstream._detach(instance, live)
            live.cause = reason or "the server was stopped"
            live.closed.set()
        with anyio.CancelScope(shield=True):
            await process_cm.__aexit__(None, None, None)
    if reason is not None:
        raise _Exit(reason)


def _version() -> str:
    try:
        from bicameral import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "0"


async def run_instance(
    upstream: Upstream, prespawned: Any = None, instance: Instance | None = None
) -> None:
    """Run one process of `instance` (the primary: the tree's ``server`` child).

    `prespawned`: the process `run_server` already started (or the
    `SpawnError` that failed it). Returns when asked to stop; raises
    `ServerExited` with the reason when the instance ends on its own.
    """
    inst = instance if instance is not None else upstream.primary
    try:
        await _session(upstream, inst, prespawned)
    except _Exit as exc:
        reason = str(exc)
        inst.exit_reason = reason
        child = current_child()
        if child.stopping.is_set():
            upstream._go_down(inst, "stopped", reason)
            return
        if upstream.shutting_down:
            # Terminated with every other server as the daemon stops: not a
            # crash. Wait for this child's own stop, which is coming.
            upstream._go_down(inst, "stopped", "the daemon is stopping")
            await child.stopping.wait()
            return
        where = "" if inst.primary else f" (instance {inst.name})"
        logger.warning("MCP server %r%s: %s", upstream.name, where, reason)
        upstream._go_down(inst, "restarting", reason)
        raise ServerExited(reason) from None
    except BaseException:
        upstream._go_down(inst, "stopped", upstream.last_error or "stopped")
        raise
    upstream._go_down(inst, "stopped", upstream.last_error or "stopped")
