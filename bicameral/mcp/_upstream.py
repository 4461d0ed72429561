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
from typing import Any

import anyio
import anyio.abc

from bicameral.mcp._adapter import ServerExited
from bicameral.mcp._common import LIST_METHODS
from bicameral.mcp._dispatcher import LeanDispatcher
from bicameral.mcp._handshake import HandshakeRefused, client_capabilities, open_session, ping
from bicameral.mcp._remote import Remote, describe_error, until_shared_login, unwrap
from bicameral.mcp._spawn import SpawnError, spawn_server
from bicameral.mcp._state import Instance, Live, Upstream
from bicameral.protocol import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    FdReader,
    FdWriter,
    PeerClosed,
    RPCError,
)
from bicameral.supervisor import current_child

__all__ = ["run_instance"]

logger = logging.getLogger("bicameral.mcp")

#: How long the first initialize + list may take (``npx`` may download first).
STARTUP_TIMEOUT = 60.0


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


#: The lists a ``list_changed`` notification makes stale.
_KINDS_CHANGED = {
    "notifications/tools/list_changed": ("tools",),
    "notifications/resources/list_changed": ("resources", "resource_templates"),
    "notifications/prompts/list_changed": ("prompts",),
}

_CAPABILITY_FOR = {
    "tools": "tools",
    "resources": "resources",
    "resource_templates": "resources",
    "prompts": "prompts",
}


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
        page = await dispatcher.call(method, params)
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
            except RPCError as exc:
                if exc.code != METHOD_NOT_FOUND or isinstance(exc, PeerClosed):
                    raise
    return lists, pages


#: A server's request -> the client capability that answers it.
_ASKS = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
#: The notifications a server sends for its clients (the rest are bicameral's own).
_EVENTS = frozenset(
    {"notifications/message", "notifications/resources/updated", "notifications/tasks/status"}
)


class _Callbacks:
    """What a server sends (its requests, its notifications), routed to the instance's clients.

    Plain dicts both ways (`ServerHandler`): a request goes to the client
    that can answer it and the client's answer back as it was given.
    """

    def __init__(
        self, upstream: Upstream, instance: Instance, refresh: Callable[[str], None]
    ) -> None:
        self.upstream = upstream
        self.instance = instance
        self.refresh = refresh

    def capabilities(self) -> dict[str, Any]:
        """The client capabilities declared to the server: its clients' (docs/mcp.md)."""
        return client_capabilities(self.instance.key.caps)

    async def on_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        capability = _ASKS.get(method)
        if capability is None:
            raise RPCError(METHOD_NOT_FOUND, "Method not found", method)
        if capability not in self.instance.key.caps:
            # Not declared to the server: it should not have asked.
            raise RPCError(INVALID_REQUEST, f"{capability} not supported")
        answer = await self.upstream.client_request(self.instance, method, capability, params)
        if not isinstance(answer, dict):  # the client could not answer: its error
            raise RPCError(answer.code, answer.message, answer.data)
        return answer

    async def on_notification(self, method: str, params: dict[str, Any]) -> None:
        # The list_changed ones were seen in order already (`seen`).
        if method in _EVENTS:
            self.upstream.server_event(self.instance, method, params)


class _Exit(Exception):
    """The server's session ended; the message says why."""


class _NeedsLoginExit(_Exit):
    """A remote server needs a person to log in: not a crash, nothing to retry."""


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


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_reason(returncode: int | None, tail: collections.deque[str]) -> str:
    if returncode is None:
        what = "closed its stdout"
    elif returncode < 0:
        what = f"was killed by signal {-returncode} ({_signal_name(-returncode)})"
    else:
        what = f"exited with status {returncode}"
    if tail:
        what += f" (stderr: {tail[-1][:300]})"
    return what


class _Local:
    """A local server's process: its pipes, its stderr, its exit."""

    def __init__(self, process_cm: Any, proc: Any, name: str) -> None:
        self._cm = process_cm
        self.proc = proc
        self.pid: int | None = proc.pid
        # The protocol's fd streams on the pipes' own descriptors (which
        # the process keeps owning): fewer scheduler trips than its streams.
        out_fd, in_fd = proc.stdout_fd, proc.stdin_fd
        assert out_fd is not None and in_fd is not None  # spawned with PIPE
        self.reader = FdReader(out_fd)
        self.writer = FdWriter(in_fd)
        self._name = name
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_done = anyio.Event()

    def start(self, tg: anyio.abc.TaskGroup, finish: Callable[[str | None], None]) -> None:
        tg.start_soon(_read_stderr, self.proc.stderr, self._name, self._tail, self._stderr_done)

        async def watch_exit() -> None:
            returncode = await self.proc.wait()
            finish(await self._reason(returncode))

        tg.start_soon(watch_exit)

    async def _reason(self, returncode: int | None) -> str:
        with anyio.move_on_after(_STDERR_DRAIN):
            await self._stderr_done.wait()
        return _exit_reason(returncode, self._tail)

    async def closed_reason(self) -> str:
        """Why the connection closed under us: the exit status (waited for, briefly)."""
        with anyio.move_on_after(1.0):
            await self.proc.wait()
        return await self._reason(self.proc.returncode)

    async def aclose(self) -> None:
        await self._cm.__aexit__(None, None, None)


async def _session(upstream: Upstream, instance: Instance, prespawned: Any = None) -> None:
    """Run the server once: spawn (or connect), initialize, list, serve, watch.

    Returns normally only when the adapter is asked to stop; raises `_Exit`
    (its message says why) when the server exits, hangs or fails to start.
    """
    config = upstream.config
    name = upstream.name if instance.primary else f"{upstream.name}/{instance.name}"
    conn: _Local | Remote
    if config.remote:
        conn = Remote(config, name, upstream, instance)
    else:
        try:
            if prespawned is None:
                prespawned = await spawn_server(config)
            elif isinstance(prespawned, SpawnError):
                raise prespawned
        except SpawnError as exc:
            raise _Exit(str(exc)) from None
        conn = _Local(prespawned[0], prespawned[1], upstream.name)
        # Shown (and reachable by a stop of the whole daemon) from its spawn
        # on, not only once it has answered `initialize`.
        instance.pid = conn.pid
        upstream.publish()
    outcome: list[str | None] = []
    try:
        async with anyio.create_task_group() as tg:

            def finish(reason: str | None) -> None:
                if not outcome:
                    outcome.append(reason)
                tg.cancel_scope.cancel()

            if isinstance(conn, Remote):
                with anyio.fail_after(STARTUP_TIMEOUT):
                    await conn.open(tg, finish)
            await _speak(upstream, instance, conn, name=name, tg=tg, finish=finish)
    except TimeoutError:
        outcome.append(f"could not connect within {STARTUP_TIMEOUT:g} s")
    except Exception as exc:
        # A failure inside the SDK's transport (an OAuth flow that cannot go
        # on, a connection refused mid-way): this instance's end, with why.
        outcome.append(f"the connection failed: {describe_error(unwrap(exc))}")
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
    reason = outcome[0] if outcome else None
    if isinstance(conn, Remote) and conn.needs_login is not None:
        raise _NeedsLoginExit(conn.needs_login)
    if reason is not None:
        raise _Exit(reason)


async def _speak(
    upstream: Upstream,
    instance: Instance,
    conn: _Local | Remote,
    *,
    name: str,
    tg: anyio.abc.TaskGroup,
    finish: Callable[[str | None], None],
) -> None:
    """Initialize, list, serve and watch one connection (local or remote) until it ends."""
    stopping = current_child().stopping
    live: Live | None = None
    pending: set[str] = set()
    wake = anyio.Event()

    def refresh(kind: str) -> None:
        pending.add(kind)
        wake.set()

    def lost() -> None:
        if live is not None:
            upstream._detach(instance, live)
        if isinstance(conn, Remote):
            # No process to watch: the connection's end is the instance's end
            # (a dropped connection, an expired session), and the supervisor
            # connects again, with its backoff.
            finish_once(conn.end_reason())

    def fatal(reason: str) -> None:
        finish(reason)  # the server broke the protocol past repair: end this instance

    def seen(method: str) -> None:
        # A list changed: from now on, a client asking for it waits for the
        # new one (the re-listing itself runs later, in its own task).
        for kind in _KINDS_CHANGED.get(method, ()):
            instance.stale.add(kind)
            refresh(kind)

    dispatcher = LeanDispatcher(
        conn.reader,
        conn.writer,
        on_eof=lost,
        max_frame=upstream.max_frame,
        on_fatal=fatal,
        name=name,
        on_notification_seen=seen,
    )
    callbacks = _Callbacks(upstream, instance, refresh)
    live = Live(dispatcher, conn.pid)
    reason_box: list[str | None] = []

    def finish_once(reason: str | None) -> None:
        reason_box.append(reason)
        finish(reason)

    async def watch_stop() -> None:
        await stopping.wait()
        finish_once(None)

    async def watch_pings() -> None:
        misses = 0
        while True:
            await anyio.sleep(ping_interval())
            with anyio.move_on_after(ping_timeout()) as scope:
                with contextlib.suppress(RPCError):
                    await ping(dispatcher)
            misses = misses + 1 if scope.cancelled_caught else 0
            if misses >= 2:
                finish_once(f"stopped answering pings ({misses} missed)")
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
                except RPCError as exc:
                    logger.warning(
                        "MCP server %r: re-listing %s failed: %s", upstream.name, kind, exc
                    )
                    continue
                finally:
                    instance.stale.discard(kind)
                instance.pages[kind] = sizes
                upstream._update_list(instance, kind, items)
            instance.touch()

    try:
        conn.start(tg, finish_once)
        tg.start_soon(watch_stop)
        await tg.start(dispatcher.run, callbacks)
        init_raw: dict[str, Any] | None = None
        try:
            with anyio.fail_after(STARTUP_TIMEOUT):
                init = await open_session(dispatcher, callbacks.capabilities(), upstream.config.era)
                lists, pages = await _list_everything(dispatcher, init.get("capabilities") or {})
                init_raw = init
        except TimeoutError:
            finish_once(f"did not initialize within {STARTUP_TIMEOUT:g} s")
        except HandshakeRefused as exc:
            finish_once(f"initialize failed: {exc}")
        except RPCError as exc:
            if isinstance(exc, PeerClosed):
                finish_once(await conn.closed_reason())
            elif isinstance(conn, Remote) and conn.errors:
                finish_once(f"initialize failed: {conn.errors[-1]}")
            else:
                finish_once(f"initialize failed: {exc.message}")
        if init_raw is None:
            # finish() cancelled the task group: this raises, and the
            # caller turns the outcome into `_Exit`. (A bare `return`
            # here would end as a normal return.)
            await anyio.sleep_forever()
        assert init_raw is not None
        # What its clients had asked of the process before this one.
        for method, params in upstream.restored(instance):
            with contextlib.suppress(RPCError):
                await dispatcher.call(method, params)
        instance.pages = pages
        upstream._go_live(instance, live, init_raw, lists)
        if instance.generations > 1:
            upstream.tell_restored(instance, instance.exit_reason)
        logger.info(
            "MCP server %r%s ready: %s, %d tools",
            upstream.name,
            "" if instance.primary else f" (instance {instance.name})",
            f"pid {conn.pid}" if conn.pid is not None else upstream.config.url,
            len(lists["tools"]),
        )
        tg.start_soon(watch_pings)
        tg.start_soon(follow_lists)
        await anyio.sleep_forever()
    finally:
        upstream._detach(instance, live)
        reason = reason_box[0] if reason_box else None
        live.cause = reason or "the server was stopped"
        live.retry_safe = isinstance(conn, Remote) and conn.session_lost
        live.closed.set()


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
    except _NeedsLoginExit as exc:
        # Waits for `mcp login` (which restarts the server) or a stop:
        # restarting it would only ask again for what nobody can give.
        logger.warning("%s", exc)
        upstream._go_down(inst, "needs-login", str(exc))
        if upstream.store is None or not await until_shared_login(upstream):
            await current_child().stopping.wait()
            return
        reason = "a login reached the shared store"
        upstream._go_down(inst, "restarting", reason)
        raise ServerExited(reason) from None
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
