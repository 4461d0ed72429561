"""A remote server's connection (streamable HTTP or SSE, OAuth), through the SDK's transports.

The only part of the daemon's MCP layer that uses the official SDK, imported
when a remote server first connects (`Remote.open`): a daemon whose servers
are all local never loads it (docs/mcp.md, "Start-up and memory"). The SDK's
transports carry its message models; `_MessagesAsBytes` and
`_BytesAsMessages` turn them into the JSON lines the daemon's
`LeanDispatcher` speaks, and back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from bicameral.mcp._common import PROTOCOL_VERSION_KEY
from bicameral.mcp._trace import TRACE_KEYS
from bicameral.supervisor import current_child

if TYPE_CHECKING:
    from bicameral.mcp._state import Instance, Upstream


__all__ = ["Remote", "RemoteError", "describe_error", "until_shared_login", "unwrap"]


class RemoteError(Exception):
    """A remote server cannot be connected to as configured; the message says why."""


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
                self._errors.append(_http_error(unwrap(item)))
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
        import mcp_types as types
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
    import mcp_types as types

    if not isinstance(message, types.JSONRPCRequest):
        return None
    meta = (message.params or {}).get("_meta")
    if not isinstance(meta, dict):
        return None
    version = meta.get(PROTOCOL_VERSION_KEY)
    # A traced call's context goes in the headers too (`bicameral.mcp._trace`).
    traced = {k: meta[k] for k in TRACE_KEYS if isinstance(meta.get(k), str)}
    if not isinstance(version, str):
        if not traced:
            return None
        from mcp.shared.message import ClientMessageMetadata

        return ClientMessageMetadata(headers=traced)
    from mcp.shared.inbound import (
        MCP_METHOD_HEADER,
        MCP_NAME_HEADER,
        MCP_PROTOCOL_VERSION_HEADER,
        NAME_BEARING_METHODS,
        encode_header_value,
    )
    from mcp.shared.message import ClientMessageMetadata

    headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: message.method, **traced}
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


class Remote:
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
            raise RemoteError(f"cannot connect to {config.url}: {exc.args[0]}") from None
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
                reason = f"cannot reach {config.url}: {_http_error(unwrap(exc))}"
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


#: Seconds between two looks at the shared store for a login (`until_shared_login`).
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


async def until_shared_login(upstream: Upstream) -> bool:
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


def describe_error(exc: BaseException) -> str:
    text = _http_error(exc)
    return text if text and text != type(exc).__name__ else f"{type(exc).__name__}: {exc}"


def unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
