"""MCP clients over streamable HTTP: ``/mcp``, ``/mcp/NAME`` (one server), ``/mcp/p/PROFILE``.

Mounted on the daemon's HTTP listener (``bicameral.daemon``'s, which has
already checked ``Host``, ``Origin`` and the bearer token). Each session is a
`ClientConn` over the same bounded `bicameral.protocol.Peer` as a client of
the stdio bridge, so an HTTP client is routed, shared and isolated exactly
like any other (docs/mcp.md, "Sharing"); this module is only the HTTP
framing of the streamable HTTP transport (MCP 2025-11-25, "Transports"):

* ``POST`` carries one JSON-RPC message. A notification or a response gets
  ``202``. A request gets its answer as ``application/json`` when nothing
  else comes first, else as an SSE stream (``text/event-stream``) that
  carries the request's progress, log messages and server-to-client
  requests, then the response, and ends. Deciding per request costs the
  common call no SSE framing at all.
* ``GET`` opens the session's one standalone SSE stream (messages related to
  no request: list changes, resource updates); a second gets ``409``.
* ``DELETE`` ends the session.

Both protocol eras:

* **handshake era** (``initialize``, up to 2025-11-25): a POST of
  ``initialize`` without a session id opens a session; its id
  (``Mcp-Session-Id``) binds later requests, the GET stream and ``DELETE``
  to it, and to the path it was opened on. A session with no request in
  flight and no open stream for ``[mcp] session_idle`` seconds (60 by
  default) ends: its instances go back to the pool, and the client's next
  request gets 404 (a new session, as the spec says). A client that goes
  away without ``DELETE`` (the TypeScript SDK's ``close()`` sends none)
  holds nothing longer than that.
* **stateless era** (``Mcp-Protocol-Version: 2026-07-28``): every POST is a
  self-contained exchange with its envelope in ``_meta``, served by a
  `ClientConn` that lives for that one request, so any replica of a hosted
  daemon can answer it.

Everything is bounded: a body by the daemon's ``max_frame`` (413), the
bodies being read together by ``max_buffered`` (503), a
session's input by `INBOX` messages (the client waits), a request's stream by
`STREAM_QUEUE` messages (the peer waits, and its ``send_timeout`` ends a
session that never reads), sessions by `MAX_SESSIONS` (503).

Why not the SDK's `StreamableHTTPServerTransport`: measured here, its
per-request memory streams, pydantic round trips and SSE framing of every
answer cost about 1 ms a call, more than the listener's whole budget;
the official conformance suite checks this framing instead (CI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from bicameral.mcp._front import http_status, load_sdk, rejection
from bicameral.mcp._host import KNOWN_VERSIONS, MODERN_VERSIONS, ClientConn
from bicameral.mcp._rounds import PARK_TIMEOUT
from bicameral.mcp._trace import trace_in_meta
from bicameral.protocol import INVALID_REQUEST, PARSE_ERROR, InputBudget, RPCError, Wire

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from bicameral.mcp._host import McpHost

__all__ = ["HttpSessions"]

#: What a path under ``/mcp`` serves: (one server's name, or a profile's name), or neither.
View = tuple[str | None, str | None]

logger = logging.getLogger("bicameral.mcp.http")

#: Open handshake-era sessions at most; past it a new one gets 503.
MAX_SESSIONS = 1000
_ID_CHARS = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
#: Messages a client may have sent that its session has not read yet.
INBOX = 16
#: Messages waiting for a slow HTTP reader, per request stream (and the GET stream).
STREAM_QUEUE = 256

_SESSION_HEADER = b"mcp-session-id"
_JSON = b"application/json"
_SSE = b"text/event-stream"


#: What a `_Stream` item is: on the way (a notification or a request), or the
#: request's answer, a result or an error.
_ON_THE_WAY, _RESULT, _ERROR = 0, 1, 2


class _Stream:
    """Where the messages for one request (or the GET stream) wait to be written."""

    __slots__ = ("abandoned", "inbox", "last", "outbox")

    def __init__(self) -> None:
        self.outbox: MemoryObjectSendStream[tuple[bytes, int]]
        self.inbox: MemoryObjectReceiveStream[tuple[bytes, int]]
        self.outbox, self.inbox = anyio.create_memory_object_stream[tuple[bytes, int]](STREAM_QUEUE)
        self.abandoned = False
        self.last: bytes | None = None  # the answer, once it came

    async def put(self, line: bytes, final: int) -> None:
        if final:
            self.last = line
        if self.abandoned:
            return  # its HTTP client went away: nobody reads this any more
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.outbox.send((line, final))


class _Session:
    """One MCP session over HTTP: the `Wire` of its `ClientConn`, and its routing.

    What the client POSTs goes to the session's inbox, which the peer reads
    (`receive`); what the peer writes (`send`) is routed by its id: a
    response to the stream of the POST that asked, a progress notification
    to the stream of the request whose token it carries, anything else to the
    newest request still in flight, or else to the GET stream.
    """

    def __init__(self, session_id: str | None, view: View) -> None:
        self.id = session_id
        self.view = view
        self._in_send, self._in_recv = anyio.create_memory_object_stream[bytes](INBOX)
        self.waiting: dict[bytes, _Stream] = {}  # request id (JSON) -> its stream
        self.tokens: dict[bytes, bytes] = {}  # progress token (JSON) -> request id (JSON)
        self.standalone: _Stream | None = None
        #: What came for the GET stream before the client opened it (at most
        #: `STREAM_QUEUE`): delivered when it opens, never lost meanwhile.
        self.early: list[bytes] = []
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.conn: ClientConn | None = None
        #: A stateless exchange's ``Mcp-Param-*`` headers (None: it sent none).
        self.param_headers: dict[str, str] | None = None

    # -- the Wire of its ClientConn --------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            return await self._in_recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""

    async def send(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line:
                await self._route(line)

    async def _route(self, line: bytes) -> None:
        message = orjson.loads(line)
        if "method" not in message:
            stream = self.waiting.pop(orjson.dumps(message.get("id")), None)
            if stream is not None:
                await stream.put(line, _ERROR if "error" in message else _RESULT)
            return
        target: _Stream | None = None
        params = message.get("params")
        if message["method"] == "notifications/progress" and isinstance(params, dict):
            request = self.tokens.get(orjson.dumps(params.get("progressToken")))
            target = self.waiting.get(request) if request is not None else None
        elif self.waiting:
            target = next(reversed(self.waiting.values()))
        target = target or self.standalone
        if target is not None:
            await target.put(line, _ON_THE_WAY)
        elif self.id is not None and len(self.early) < STREAM_QUEUE:
            # Both SDKs open the GET stream only after `initialized`: what the
            # session says meanwhile (a server's request outside any call, a
            # list change) waits for it.
            self.early.append(line)
        else:
            logger.debug("no stream for %s on an HTTP session: dropped", message["method"])

    # -- what the HTTP side does -------------------------------------------------------------

    async def deliver(self, body: bytes) -> None:
        self.last_used = time.monotonic()
        await self._in_send.send(body + b"\n")

    def expect(self, request_id: bytes, token: bytes | None) -> _Stream:
        stream = _Stream()
        self.waiting[request_id] = stream
        if token is not None:
            self.tokens[token] = request_id
        return stream

    def forget(self, request_id: bytes, token: bytes | None, stream: _Stream) -> None:
        stream.abandoned = True
        if self.waiting.get(request_id) is stream:
            del self.waiting[request_id]
        if token is not None and self.tokens.get(token) == request_id:
            del self.tokens[token]
        self.last_used = time.monotonic()

    def close(self) -> None:
        self._in_send.close()
        if self.standalone is not None:
            self.standalone.outbox.close()


class HttpSessions:
    """The ASGI app mounted at ``/mcp``: sessions of both eras, per path."""

    def __init__(
        self,
        host: McpHost,
        max_frame: int,
        max_buffered: int,
        *,
        session_id_header: Callable[[], str | None] | None = None,
    ) -> None:
        self.host = host
        #: ``[daemon.http] session_id_header`` (as it is now): a new session's id.
        self.session_id_header = session_id_header
        self.max_frame = max_frame
        self.budget = InputBudget(max_buffered)
        self.sessions: dict[str, _Session] = {}
        #: Stateless exchanges whose call waits for its client's answers, by requestState.
        self.parked: dict[str, _Session] = {}
        #: Stateless exchanges being served (a drain ends their listen streams).
        self.exchanges: set[_Session] = set()
        self.draining = False
        self.posts = 0  # POSTs being answered (a drain waits for them)
        self._posts_done = anyio.Event()
        self._group: anyio.abc.TaskGroup | None = None
        self._started = anyio.Event()

    async def run(self) -> None:
        """Hold the task group the sessions run in, for the daemon's life; end idle ones."""
        async with anyio.create_task_group() as tg:
            self._group = tg
            self._started.set()
            while True:
                bound = self.host.registry.session_idle
                await anyio.sleep(min(15.0, bound / 4))
                now = time.monotonic()
                for session in list(self.sessions.values()):
                    idle = not session.in_flight and session.standalone is None
                    if idle and now - session.last_used > bound:
                        logger.info("HTTP MCP session %s ended: idle", session.id)
                        self._end(session)

    def drain(self) -> None:
        """The daemon is stopping: no new sessions; requests in flight finish, then streams end.

        The listener has stopped accepting connections and gives what is in
        flight its grace; the GET streams (which never end on their own) are
        closed once no POST is left, so that the listener can finish.
        """
        self.draining = True
        for exchange in list(self.exchanges):
            if exchange.conn is not None:
                exchange.conn.end_listening()
        if self._group is not None:
            self._group.start_soon(self._close_streams_when_idle)

    async def _close_streams_when_idle(self) -> None:
        while self.posts:
            await self._posts_done.wait()
        for session in list(self.sessions.values()):
            if session.standalone is not None:
                session.standalone.outbox.close()

    def _park_or_close(self, session: _Session, answer: bytes | None) -> None:
        """A stateless exchange is over, unless its call waits for a round's answers."""
        state = None
        if answer is not None and b'"input_required"' in answer:
            result = orjson.loads(answer).get("result")
            state = result.get("requestState") if isinstance(result, dict) else None
        if not isinstance(state, str) or self._group is None:
            self.exchanges.discard(session)
            session.close()
            return
        self.parked[state] = session

        async def expire() -> None:
            await anyio.sleep(PARK_TIMEOUT)
            if self.parked.get(state) is session:
                del self.parked[state]
                self.exchanges.discard(session)
                session.close()

        self._group.start_soon(expire)

    def _end(self, session: _Session) -> None:
        if session.id is not None:
            self.sessions.pop(session.id, None)
        session.close()

    async def _serve(
        self,
        session: _Session,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one session's `ClientConn` until its input ends."""
        server, profile = session.view
        wire = Wire(session)
        conn = ClientConn(self.host, wire, server, None, self.max_frame, profile=profile)
        if session.id is None:  # a stateless exchange
            conn.http_exchange = True
            conn.param_headers = session.param_headers
        session.conn = conn
        task_status.started()
        try:
            await conn.run(b"")
        except Exception:
            logger.exception("an HTTP MCP session failed")
        finally:
            self.exchanges.discard(session)
            self._end(session)

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._started.wait()
        path = scope.get("path", "")[len(scope.get("root_path", "")) :].strip("/")
        view = _view(path)
        registry = self.host.registry
        server = view[0] if view is not None else path
        if view is None or (server is not None and registry.get(server) is None):
            configured = ", ".join(registry.configured) or "none"
            await _error(send, 404, f"no MCP server named {server!r} (configured: {configured})")
            return
        headers = _headers(scope)
        raw = headers.get(b"mcp-protocol-version")
        version = raw.decode("latin-1").strip() if raw is not None else None
        method = scope.get("method")
        # A version of neither era is the stateless front's to refuse (-32022
        # naming what it serves), as the era's servers do.
        unknown = version is not None and version not in KNOWN_VERSIONS
        modern = version in MODERN_VERSIONS or (method == "POST" and unknown)
        if unknown and not modern:
            await _error(send, 400, f"unsupported MCP-Protocol-Version {version!r}")
            return
        if method == "POST":
            self.posts += 1
            try:
                await self._post(view, modern, scope, receive, send)
            finally:
                self.posts -= 1
                if not self.posts:
                    self._posts_done.set()
                    self._posts_done = anyio.Event()
        elif method == "GET":
            await self._get(view, headers, receive, send)
        elif method == "DELETE":
            session = await self._session(view, headers, send)
            if session is not None:
                self._end(session)
                await _respond(send, 200, b"", [])
        else:
            await _respond(
                send,
                405,
                b"method not allowed",
                [(b"allow", b"GET, POST, DELETE"), (b"content-type", b"text/plain")],
            )

    async def _session(
        self, view: View, headers: Mapping[bytes, bytes], send: Any
    ) -> _Session | None:
        """The session the request names (or an error response sent, and None)."""
        given = headers.get(_SESSION_HEADER)
        if given is None:
            await _error(send, 400, "Bad Request: Missing session ID")
            return None
        session = self.sessions.get(given.decode("latin-1"))
        if session is None or session.view != view:
            await _error(send, 404, "Session not found")
            return None
        return session

    def _new_id(self, headers: Mapping[bytes, bytes]) -> str:
        """A new session's id: the proxy's (``session_id_header``) when valid and free.

        The proxy hashed this ``initialize`` on that value; with it as the
        session's id, the session's later requests, hashed on
        ``Mcp-Session-Id``, reach this daemon again. Anything else (no such
        header, a value that is not 32-128 URL-safe characters, an id in
        use) gets a random id.
        """
        name = self.session_id_header() if self.session_id_header is not None else None
        if name:
            given = headers.get(name.encode("latin-1"), b"")
            if 32 <= len(given) <= 128 and given.translate(None, _ID_CHARS) == b"":
                text = given.decode("ascii")
                if text not in self.sessions:
                    return text
        return os.urandom(16).hex()

    async def _post(self, view: View, modern: bool, scope: Any, receive: Any, send: Any) -> None:
        headers = _headers(scope)
        accept = headers.get(b"accept", b"")
        if _JSON not in accept or _SSE not in accept:
            await _error(
                send, 406, "Not Acceptable: accept both application/json and text/event-stream"
            )
            return
        if _JSON not in headers.get(b"content-type", b""):
            await _error(send, 415, "Unsupported Media Type: Content-Type must be application/json")
            return
        length = headers.get(b"content-length", b"")
        too_long = length.isdigit() and int(length) > self.max_frame
        body = 413 if too_long else await _body(receive, self.max_frame, self.budget)
        if body == 413:
            await _error(send, 413, f"the message is larger than {self.max_frame} bytes")
            return
        if not isinstance(body, bytes):
            await _error(send, 503, "the daemon holds too much unfinished input; retry")
            return
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await _error(send, 400, f"Parse error: {exc}", PARSE_ERROR)
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await _error(send, 400, "Invalid Request: one JSON-RPC 2.0 message per POST")
            return
        is_request = "method" in message and "id" in message
        if is_request and (
            not isinstance(message["id"], str | int) or isinstance(message["id"], bool)
        ):
            # Its answer could not be told apart from an answer to nothing.
            await _error(send, 400, "Invalid Request: id must be a string or an integer")
            return
        opened: _Session | None = None
        if modern:
            # The front's own checks first: the envelope, the routing headers.
            await load_sdk()
            refused, sent = rejection(message, scope["headers"], MODERN_VERSIONS)
            if refused is not None:
                await _rpc_error(send, message.get("id"), refused)
                return
            if not is_request:
                await _respond(send, 202, b"", [])  # nothing to say in the stateless era
                return
            # A call sent again with the answers its server asked for goes
            # back to the session that holds it (`bicameral.mcp._rounds`).
            params = message.get("params")
            state = params.get("requestState") if isinstance(params, dict) else None
            parked = self.parked.pop(state, None) if isinstance(state, str) else None
            if parked is not None and parked.view == view:
                session = parked
                if parked.conn is not None:
                    parked.conn.param_headers = sent
            else:
                session = opened = _Session(None, view)
                session.param_headers = sent
                self.exchanges.add(session)
        elif message.get("method") == "initialize" and _SESSION_HEADER not in headers:
            if self.draining or len(self.sessions) >= MAX_SESSIONS:
                why = "the daemon is stopping" if self.draining else "too many open MCP sessions"
                await _error(send, 503, why)
                return
            session = opened = _Session(self._new_id(headers), view)
            assert session.id is not None
            self.sessions[session.id] = session
        else:
            found = await self._session(view, headers, send)
            if found is None:
                return
            session = found
        if opened is not None:
            assert self._group is not None
            await self._group.start(self._serve, opened)
        if not is_request:
            try:
                await session.deliver(body)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                await _error(send, 404, "Session not found (it has ended)")
                return
            await _respond(send, 202, b"", [])
            return
        request_id = orjson.dumps(message["id"])
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if b"traceparent" in headers:
            body, meta = trace_in_meta(message, headers, body)
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        token_key = orjson.dumps(token) if token is not None else None
        if request_id in session.waiting:
            await _error(send, 409, "a request with this id is already in flight")
            return
        stream = session.expect(request_id, token_key)
        session.in_flight += 1
        extra = [(b"mcp-session-id", session.id.encode())] if session.id is not None else []
        status = "gone"
        try:
            try:
                await session.deliver(body)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                await _error(send, 404, "Session not found (it has ended)")
                return
            with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                exchange = (session, receive, request_id) if modern else None
                status = await self._answer(stream, send, extra, _prefers_sse(accept), exchange)
        finally:
            session.in_flight -= 1
            session.forget(request_id, token_key, stream)
            if modern:
                self._park_or_close(session, stream.last)
        if opened is not None and opened.id is not None and status != "ok":
            self._end(opened)  # its initialize failed: no session was established

    async def _answer(
        self,
        stream: _Stream,
        send: Any,
        extra: list[Any],
        prefers_sse: bool,
        exchange: tuple[_Session, Any, bytes] | None = None,
    ) -> str:
        """Write one request's answer: JSON when it comes alone, else an SSE stream.

        Alone and as JSON, unless the client prefers SSE (`_prefers_sse`). A
        stateless `exchange`'s error answer has its HTTP status (400, 404:
        `bicameral.mcp._front.http_status`), and its client closing the
        stream cancels the request (that era's cancellation).

        Returns ``"ok"``, or ``"error"`` when the answer is a JSON-RPC error.
        """
        line, final = await stream.inbox.receive()
        if final and not prefers_sse:
            status = 200
            if exchange is not None and final == _ERROR:
                status = http_status(orjson.loads(line)["error"].get("code"))
            await _respond(send, status, line, [(b"content-type", _JSON), *extra])
            return "error" if final == _ERROR else "ok"
        await _start_stream(send, extra)
        if exchange is None:
            return await self._stream(stream, send, line, final)
        session, receive, request_id = exchange
        outcome = "gone"
        async with anyio.create_task_group() as tg:

            async def cancel_on_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                note = b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":'
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await session.deliver(note + request_id + b"}}")
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_on_disconnect)
            outcome = await self._stream(stream, send, line, final)
            tg.cancel_scope.cancel()
        return outcome

    @staticmethod
    async def _stream(stream: _Stream, send: Any, line: bytes, final: int) -> str:
        while True:
            await send({"type": "http.response.body", "body": _event(line), "more_body": not final})
            if final:
                return "error" if final == _ERROR else "ok"
            line, final = await stream.inbox.receive()

    async def _get(
        self, view: View, headers: Mapping[bytes, bytes], receive: Any, send: Any
    ) -> None:
        if _SSE not in headers.get(b"accept", b""):
            await _error(send, 406, "Not Acceptable: accept text/event-stream")
            return
        session = await self._session(view, headers, send)
        if session is None:
            return
        if session.standalone is not None or self.draining:
            await _error(send, 409, "Conflict: this session already has its GET stream")
            return
        stream = session.standalone = _Stream()
        early, session.early = session.early, []
        for line in early:
            await stream.put(line, _ON_THE_WAY)
        session.last_used = time.monotonic()
        try:
            await _start_stream(send, [(b"mcp-session-id", (session.id or "").encode())])
            await send(
                {"type": "http.response.body", "body": b": stream open\n\n", "more_body": True}
            )
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                async for line, _ in stream.inbox:
                    await send(
                        {"type": "http.response.body", "body": _event(line), "more_body": True}
                    )
                tg.cancel_scope.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            stream.abandoned = True
            if session.standalone is stream:
                session.standalone = None
            session.last_used = time.monotonic()


def _view(path: str) -> View | None:
    """(server, profile) of a path under ``/mcp``: ``""``, ``NAME`` or ``p/PROFILE``.

    ``None`` for any other path. An unknown profile is a session that
    answers with an MCP error naming the profiles (`ClientConn`), not a 404.
    """
    if not path:
        return None, None
    if "/" not in path:
        return path, None
    head, _, profile = path.partition("/")
    if head == "p" and profile and "/" not in profile:
        return None, profile
    return None


def _prefers_sse(accept: bytes) -> bool:
    """Whether ``Accept`` ranks ``text/event-stream`` above ``application/json``.

    By q-value, and at equal q by order: a client that lists the stream first
    gets every answer as a stream, even one with nothing before it.
    """
    ranks: dict[bytes, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(b",")):
        kind, _, params = part.strip().partition(b";")
        q = 1.0
        for param in params.split(b";"):
            name, _, value = param.strip().partition(b"=")
            if name == b"q":
                with contextlib.suppress(ValueError):
                    q = float(value)
        ranks.setdefault(kind.strip().lower(), (q, -position))
    sse, json_ = ranks.get(_SSE), ranks.get(_JSON)
    return sse is not None and json_ is not None and sse > json_


def _headers(scope: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


async def _start_stream(send: Any, extra: list[Any]) -> None:
    """Begin a ``200`` SSE response (its events follow with `_more`)."""
    headers = [(b"content-type", _SSE), (b"cache-control", b"no-cache, no-transform"), *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _more(send: Any, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _event(line: bytes) -> bytes:
    return b"event: message\ndata: " + line + b"\n\n"


async def _body(receive: Any, limit: int, budget: InputBudget) -> bytes | int:
    """The request body; or the status refusing it: 413 past `limit`, 503 past `budget`.

    Bodies being read count against `budget` (the listener's share of
    ``max_buffered``) while they are read, so that many slow senders of large
    bodies cannot hold unbounded memory between them.
    """
    # One growing buffer, not a list of 64 KiB pieces: a large one lives in
    # its own mapping, which goes back to the system when it is freed.
    body = bytearray()
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return 400  # the client went away before the end of its body
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                return 413
            if not budget.claim(size, size + len(chunk)):
                budget.claim(size + len(chunk), size)
                await _discard_rest(receive, message, size + len(chunk), limit)
                return 503
            size += len(chunk)
            body += chunk
            if not message.get("more_body"):
                return bytes(body)
    finally:
        del body
        budget.claim(size, 0)


async def _discard_rest(receive: Any, message: Any, seen: int, limit: int) -> None:
    """Read what is left of a refused body (up to `limit`), keeping none of it.

    Closing a connection with unread input makes the kernel answer with a
    reset, which can reach the client before the refusal it was sent: the
    client would see "disconnected" instead of the 503. The listener's read
    timeouts bound how long this may take.
    """
    while message.get("more_body") and seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))


async def _respond(send: Any, status: int, body: bytes, headers: list[Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _rpc_error(send: Any, request_id: Any, error: RPCError) -> None:
    """A stateless-era request refused before it is served: its id, its code's HTTP status."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    answer = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": body})
    await _respond(send, http_status(error.code), answer, [(b"content-type", _JSON)])


async def _error(send: Any, status: int, message: str, code: int = INVALID_REQUEST) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    await _respond(send, status, body, [(b"content-type", _JSON)])
