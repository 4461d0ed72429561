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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.shared.exceptions import MCPError

from bicameral.mcp._adapter import ServerExited
from bicameral.mcp._common import (
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    LIST_METHODS,
    PROTOCOL_VERSION_KEY,
    SERVER_INFO_KEY,
)
from bicameral.mcp._dispatcher import LeanDispatcher
from bicameral.mcp._spawn import SpawnError, spawn_server
from bicameral.mcp._state import Instance, Live, Upstream
from bicameral.protocol import (
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    FdReader,
    FdWriter,
    PeerClosed,
    RPCError,
)
from bicameral.supervisor import current_child

if TYPE_CHECKING:
    pass

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

    def capabilities(self) -> dict[str, Any]:
        """The client capabilities `session_kwargs` declares, as JSON."""
        caps = self.instance.key.caps
        return {cap: {} for cap in ("sampling", "elicitation", "roots") if cap in caps}

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


class _MessagesAsBytes:
    """The SDK transport's incoming messages as JSON lines, for the daemon's `Peer`."""

    def __init__(self, read_stream: Any, errors: list[str]) -> None:
        self._read = read_stream
        self._errors = errors

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            try:
                item = await self._read.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return b""
            if isinstance(item, Exception):
                # The transport failed (the server went away, refused us, or
                # forgot our session): this connection is over. The instance
                # ends with the reason, and the supervisor connects again.
                self._errors.append(_http_error(_unwrap(item)))
                return b""
            data: bytes = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
            return data + b"\n"


class _BytesAsMessages:
    """JSON lines from the daemon's `Peer`, as the SDK transport's outgoing messages."""

    def __init__(
        self, write_stream: Any, tools: Callable[[], list[dict[str, Any]]] | None = None
    ) -> None:
        self._write = write_stream
        self._tools = tools

    def _schema(self, name: Any) -> Any:
        """The input schema of the server's tool `name`, as it last listed it."""
        for tool in self._tools() if self._tools is not None else ():
            if tool.get("name") == name:
                return tool.get("inputSchema")
        return None

    async def send(self, data: bytes) -> None:
        from mcp.shared.message import SessionMessage

        for line in data.splitlines():
            if line.strip():
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                await self._write.send(
                    SessionMessage(message, metadata=_era_headers(message, self._schema))
                )


def _param_headers(schema: Any, arguments: Any) -> dict[str, str]:
    """The ``Mcp-Param-*`` headers a ``tools/call`` mirrors from its arguments (SEP-2243).

    From the tool's ``x-mcp-header`` annotations, as the SDK's client does; a
    tool whose annotations are invalid mirrors nothing.
    """
    from mcp.shared.inbound import find_invalid_x_mcp_header, mcp_param_headers, x_mcp_header_map

    if not isinstance(schema, dict) or not isinstance(arguments, dict):
        return {}
    if find_invalid_x_mcp_header(schema) is not None:
        return {}
    return mcp_param_headers(x_mcp_header_map(schema), arguments)


def _era_headers(message: Any, schema_of: Callable[[Any], Any] | None = None) -> Any:
    """The per-request HTTP headers of a 2026-07-28-era request, as the SDK's metadata.

    A request of that era (``server/discover``, the probe, included) says its
    protocol version in ``_meta``; over streamable HTTP it must say it in the
    ``MCP-Protocol-Version`` and ``Mcp-Method`` headers too, or the server
    answers 400. The SDK's own session stamps them through the transport's
    per-message metadata; the daemon's `LeanDispatcher` speaks JSON lines, so
    they are stamped here. A handshake-era request gets none (the transport
    adds the negotiated version itself). The configured headers are the
    HTTP client's, on every request whatever this adds.
    """
    if not isinstance(message, types.JSONRPCRequest):
        return None
    meta = (message.params or {}).get("_meta")
    version = meta.get(PROTOCOL_VERSION_KEY) if isinstance(meta, dict) else None
    if not isinstance(version, str):
        return None
    from mcp.shared.inbound import (
        MCP_METHOD_HEADER,
        MCP_NAME_HEADER,
        MCP_PROTOCOL_VERSION_HEADER,
        NAME_BEARING_METHODS,
        encode_header_value,
    )
    from mcp.shared.message import ClientMessageMetadata

    headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: message.method}
    name_key = NAME_BEARING_METHODS.get(message.method)
    name = (message.params or {}).get(name_key) if name_key is not None else None
    if isinstance(name, str):
        headers[MCP_NAME_HEADER] = encode_header_value(name)
    if message.method == "tools/call" and schema_of is not None:
        headers.update(_param_headers(schema_of(name), (message.params or {}).get("arguments")))
    return ClientMessageMetadata(headers=headers)


_HTTP_5XX = "the server answered HTTP"


def _http_error_status(status: int) -> str:
    if status == 401:
        return "the server refused the credentials (HTTP 401): check auth, token and headers"
    if status == 403:
        return "the server refused access (HTTP 403)"
    if status == 404:
        return "nothing at that URL (HTTP 404)"
    return f"the server answered HTTP {status}"


def _http_error(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return _http_error_status(status)
    return str(exc) or type(exc).__name__


class _Remote:
    """A remote server's connection: streamable HTTP or SSE, through the SDK's transports."""

    pid = None

    def __init__(
        self, config: Any, name: str, upstream: Upstream, instance: Instance | None = None
    ) -> None:
        self._config = config
        self._instance = instance
        self._name = name
        self._upstream = upstream
        self.errors: list[str] = []
        self.session_lost = False
        self.needs_login: str | None = None
        self._finish: Callable[[str | None], None] | None = None
        self.reader: Any = None
        self.writer: Any = None
        self._ended: str | None = None

    def _tools(self) -> list[dict[str, Any]]:
        """The tools the server listed on this connection (for their ``x-mcp-header``)."""
        return self._instance.lists.get("tools", []) if self._instance is not None else []

    def _headers(self) -> dict[str, str]:
        from bicameral.mcp._config import expand_env

        config = self._config
        try:
            headers = {k: expand_env(v, os.environ) for k, v in config.headers}
            if config.auth == "bearer":
                headers["Authorization"] = f"Bearer {expand_env(config.token, os.environ)}"
        except KeyError as exc:
            raise _Exit(f"cannot connect to {config.url}: {exc.args[0]}") from None
        return headers

    def _client(
        self, headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
    ) -> Any:
        """The SDK's HTTP client, watching every response's status for us."""
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self._config.auth == "oauth":
            auth = _shared_auth(self._upstream).provider
        client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        client.event_hooks["response"].append(self._on_response)
        return client

    async def _on_response(self, response: Any) -> None:
        status = response.status_code
        if status < 400:
            trouble = self._upstream.trouble
            if status < 300 and trouble is not None and trouble.startswith(_HTTP_5XX):
                self._upstream.remote_fine()
            return
        if status >= 500:
            self._upstream.remote_trouble(f"{_HTTP_5XX} {status} ({self._config.url})")
        if status == 404 and "mcp-session-id" in response.request.headers:
            # The server no longer knows our session (it restarted, or expired
            # it): nothing was done with this request. Connect again; the
            # calls caught in this are retried once on the new session.
            self.session_lost = True
            self.errors.append("the server no longer knows the session (HTTP 404)")
            if self._finish is not None:
                self._finish(self.end_reason())
            return
        self.errors.append(_http_error_status(status))

    async def open(self, tg: anyio.abc.TaskGroup, finish: Callable[[str | None], None]) -> None:
        """Connect (in a task of `tg`, which owns the transport); `finish` when it ends."""
        headers = self._headers()
        ready = anyio.Event()
        config = self._config
        self._finish = finish
        if config.auth == "oauth":
            _shared_auth(self._upstream).listeners.add(self._on_needs_login)
            if not await _has_tokens(self._upstream):
                # Nothing to refresh: only a person can log in. (Letting the
                # SDK's flow run here would register a client for nothing.)
                self._on_needs_login(
                    f"MCP server {config.name!r} needs a login: "
                    f"run `bicameral mcp login {config.name}`"
                )
                await anyio.sleep_forever()  # finish() cancelled us

        async def run() -> None:
            reason = "the connection closed"
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if config.transport == "sse":
                        from mcp.client.sse import sse_client

                        streams = await stack.enter_async_context(
                            sse_client(
                                config.url, headers=headers, httpx_client_factory=self._client
                            )
                        )
                    else:
                        from mcp.client.streamable_http import streamable_http_client

                        client = await stack.enter_async_context(self._client(headers=headers))
                        streams = await stack.enter_async_context(
                            streamable_http_client(config.url, http_client=client)
                        )
                    self.reader = _MessagesAsBytes(streams[0], self.errors)
                    self.writer = _BytesAsMessages(streams[1], self._tools)
                    ready.set()
                    await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                reason = f"cannot reach {config.url}: {_http_error(_unwrap(exc))}"
                finish(reason)
                return
            finish(self.end_reason())

        tg.start_soon(run)
        await ready.wait()

    def start(self, tg: anyio.abc.TaskGroup, finish: Callable[[str | None], None]) -> None:
        return None  # `open` already watches the connection

    def end_reason(self) -> str:
        last = self.errors[-1] if self.errors else "the connection closed"
        return f"{self._config.url}: {last}"

    async def closed_reason(self) -> str:
        return self.end_reason()

    def _on_needs_login(self, message: str) -> None:
        self.needs_login = message
        if self._finish is not None:
            self._finish(message)

    async def aclose(self) -> None:
        # The transport is closed by its own task, with the task group.
        shared = self._upstream.auth
        if shared is not None:
            shared.listeners.discard(self._on_needs_login)


#: Seconds between two looks at the shared store for a login (`_until_shared_login`).
LOGIN_POLL = 2.0


class _SharedAuth:
    """One OAuth provider per server, shared by its instances: one refresh at a time."""

    def __init__(self, upstream: Upstream) -> None:
        from bicameral.mcp._oauth import daemon_provider

        self.config = upstream.config
        self.listeners: set[Callable[[str], None]] = set()
        self.provider = daemon_provider(
            upstream.config, _home(upstream), self._needs_login, upstream.store
        )
        self.storage: Any = self.provider.context.storage  # TokenFile, or StoreTokens

    def _needs_login(self, message: str) -> None:
        for listener in list(self.listeners):
            listener(message)


def _home(upstream: Upstream) -> Path:
    """The state directory the server's tokens live under (the daemon's; else the default)."""
    if upstream.home is not None:
        return upstream.home
    from bicameral.daemon import resolve_paths

    return resolve_paths(None).home


async def _has_tokens(upstream: Upstream) -> bool:
    """Whether a login stored tokens: in the shared store if there is one, else the file."""
    from bicameral.mcp._config import has_stored_tokens

    if has_stored_tokens(_home(upstream), upstream.name):
        return True
    storage = _shared_auth(upstream).storage
    if upstream.store is None:
        return False
    from bicameral.daemon import StoreError

    try:
        return await storage.get_tokens() is not None
    except StoreError:
        return False  # the store's problem is shown; a login there is what is missing


async def _until_shared_login(upstream: Upstream) -> bool:
    """With a shared store: True once the server's record there is new; False on a stop.

    A login made in any replica (``mcp login`` in its state directory) or a
    refresh another replica made lands in the store; looked at every
    `LOGIN_POLL` seconds, since nothing tells this replica.
    """
    from bicameral.daemon import StoreError

    storage = _shared_auth(upstream).storage
    seen = storage.record.get("updated_at")
    stopping = current_child().stopping
    while not stopping.is_set():
        with anyio.move_on_after(LOGIN_POLL):
            await stopping.wait()
        if stopping.is_set():
            break
        try:
            record = await storage.load()
        except StoreError:
            continue  # the store's own problem is shown; keep waiting
        if record.get("tokens") and record.get("updated_at") != seen:
            return True
    return False


def _shared_auth(upstream: Upstream) -> _SharedAuth:
    """The server's one provider; a new one after a login or logout rewrote its tokens."""
    shared = upstream.auth
    if (
        not isinstance(shared, _SharedAuth)
        or shared.config != upstream.config
        or shared.storage.changed_elsewhere()
    ):
        listeners = shared.listeners if isinstance(shared, _SharedAuth) else set()
        shared = upstream.auth = _SharedAuth(upstream)
        shared.listeners |= listeners
    return shared


def _describe(exc: BaseException) -> str:
    text = _http_error(exc)
    return text if text and text != type(exc).__name__ else f"{type(exc).__name__}: {exc}"


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _session(upstream: Upstream, instance: Instance, prespawned: Any = None) -> None:
    """Run the server once: spawn (or connect), initialize, list, serve, watch.

    Returns normally only when the adapter is asked to stop; raises `_Exit`
    (its message says why) when the server exits, hangs or fails to start.
    """
    config = upstream.config
    name = upstream.name if instance.primary else f"{upstream.name}/{instance.name}"
    conn: _Local | _Remote
    if config.remote:
        conn = _Remote(config, name, upstream, instance)
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

            if isinstance(conn, _Remote):
                with anyio.fail_after(STARTUP_TIMEOUT):
                    await conn.open(tg, finish)
            await _speak(upstream, instance, conn, name=name, tg=tg, finish=finish)
    except TimeoutError:
        outcome.append(f"could not connect within {STARTUP_TIMEOUT:g} s")
    except Exception as exc:
        # A failure inside the SDK's transport (an OAuth flow that cannot go
        # on, a connection refused mid-way): this instance's end, with why.
        outcome.append(f"the connection failed: {_describe(_unwrap(exc))}")
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
    reason = outcome[0] if outcome else None
    if isinstance(conn, _Remote) and conn.needs_login is not None:
        raise _NeedsLoginExit(conn.needs_login)
    if reason is not None:
        raise _Exit(reason)


async def _open_session(
    session: ClientSession, dispatcher: LeanDispatcher, callbacks: _Callbacks, era: str = "auto"
) -> dict[str, Any]:
    """The server's identity, as an ``initialize`` result, in the era it speaks.

    With ``era = "auto"``, the handshake first (every server of the handshake
    era, and the SDK's dual-era servers, answer it); a server that refuses it
    for its protocol version speaks only the 2026-07-28 era: it is discovered
    instead. ``era = "stateless"`` discovers at once (no ``initialize`` is
    ever sent), ``"handshake"`` never discovers. A discovered server gets the
    envelope on every request (`LeanDispatcher.envelope`).
    """
    from mcp.shared.exceptions import MCPError

    if era != "stateless":
        try:
            return _dump(await session.initialize())
        except MCPError as exc:
            if era == "handshake" or exc.code not in (
                UNSUPPORTED_PROTOCOL_VERSION,
                METHOD_NOT_FOUND,
            ):
                raise
    found = _dump(await session.discover())
    version = session.protocol_version
    info = {"name": "bicameral", "version": _version()}
    dispatcher.envelope = {
        PROTOCOL_VERSION_KEY: version,
        CLIENT_INFO_KEY: info,
        CLIENT_CAPABILITIES_KEY: callbacks.capabilities(),
    }
    server_info = (found.get("_meta") or {}).get(SERVER_INFO_KEY)
    init: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": found.get("capabilities") or {},
        "serverInfo": server_info if isinstance(server_info, dict) else {"name": "?"},
    }
    if found.get("instructions"):
        init["instructions"] = found["instructions"]
    return init


async def _speak(
    upstream: Upstream,
    instance: Instance,
    conn: _Local | _Remote,
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
        if isinstance(conn, _Remote):
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
    session = ClientSession(
        **callbacks.session_kwargs(),
        client_info=types.Implementation(name="bicameral", version=_version()),
        dispatcher=dispatcher,
    )
    live = Live(dispatcher, session, conn.pid)
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
                with contextlib.suppress(MCPError):
                    await session.send_ping()
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
        async with session:
            init_raw: dict[str, Any] | None = None
            try:
                with anyio.fail_after(STARTUP_TIMEOUT):
                    init = await _open_session(session, dispatcher, callbacks, upstream.config.era)
                    lists, pages = await _list_everything(
                        dispatcher, init.get("capabilities") or {}
                    )
                    init_raw = init
            except TimeoutError:
                finish_once(f"did not initialize within {STARTUP_TIMEOUT:g} s")
            except (MCPError, RPCError) as exc:
                # MCPError from the SDK's handshake (made from ours, its
                # cause), RPCError from the lists.
                if isinstance(exc, PeerClosed) or isinstance(exc.__cause__, PeerClosed):
                    finish_once(await conn.closed_reason())
                elif isinstance(conn, _Remote) and conn.errors:
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
        live.retry_safe = isinstance(conn, _Remote) and conn.session_lost
        live.closed.set()


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
    except _NeedsLoginExit as exc:
        # Waits for `mcp login` (which restarts the server) or a stop:
        # restarting it would only ask again for what nobody can give.
        logger.warning("%s", exc)
        upstream._go_down(inst, "needs-login", str(exc))
        if upstream.store is None or not await _until_shared_login(upstream):
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
