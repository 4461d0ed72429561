"""The dashboard as an ASGI app on the daemon's listener: ``GET /`` and ``/dashboard/*``.

Mounted by the MCP plugin at ``/`` (exactly) and ``/dashboard``. The
listener has already checked ``Host`` and ``Origin`` and bounded the
requests in flight; instead of the bearer token it asks `session`
(:class:`Dashboard` itself, a :class:`bicameral.daemon.SessionGuard`),
which admits the sign-in page, the one-time link and the style sheet to
anyone and everything else to a signed-in session. Refused: a page is
redirected (303) to the sign-in form, anything else gets 403.

Routes: ``GET /`` the page; ``GET /dashboard/events`` the live parts as a
server-sent event stream (``update``: JSON of HTML fragments); ``GET
/dashboard/state`` the same data as JSON; ``GET /dashboard/stderr?server=``
a server's stderr tail; ``POST /dashboard/action`` (``server``, ``action``
= ``restart | stop | start``, the CSRF token in ``X-CSRF-Token`` or
``csrf``) runs the daemon's own ``adapters.*`` method, as ``bicameral mcp
restart`` does; ``POST /dashboard/signin``, ``GET /dashboard/link?code=``
and ``POST /dashboard/signout``. Every ``POST`` needs the listener's own
``Origin`` (a browser always sends one with a POST).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from bicameral.mcp.dashboard._page import ICON, SCRIPT, STYLE, page, signin_page
from bicameral.mcp.dashboard._session import Session, Sessions
from bicameral.mcp.dashboard._view import REFRESH, TICK, View, render, render_stderr

if TYPE_CHECKING:
    from bicameral.daemon import DaemonHost
    from bicameral.mcp._registry import Registry

__all__ = ["MAX_STREAMS", "Dashboard"]

#: Event streams open at once at most (browser tabs).
MAX_STREAMS = 16
_MAX_BODY = 16384
_PUBLIC = frozenset(
    {"/dashboard/signin", "/dashboard/link", "/dashboard/style.css", "/dashboard/icon.svg"}
)
_ACTIONS = frozenset({"restart", "stop", "start"})


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _respond(
    send: Any,
    status: int,
    body: str | bytes,
    content_type: str = "text/html; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = body.encode() if isinstance(body, str) else body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"cache-control", b"no-store"),
                (b"x-frame-options", b"DENY"),
                (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
                (b"referrer-policy", b"same-origin"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _redirect(send: Any, where: str, cookie: bytes | None = None) -> None:
    extra = [(b"location", where.encode())]
    if cookie is not None:
        extra.append((b"set-cookie", cookie))
    await _respond(send, 303, "", headers=extra)


async def _json(send: Any, status: int, value: Any) -> None:
    await _respond(send, status, json.dumps(value), "application/json")


async def _body(receive: Any) -> bytes | None:
    """The request body, or ``None`` past `_MAX_BODY` bytes."""
    data = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return data
        data += bytes(message.get("body", b""))
        if len(data) > _MAX_BODY:
            return None
        if not message.get("more_body"):
            return data


class Dashboard:
    """The ASGI app and its session guard."""

    def __init__(self, host: DaemonHost, registry: Registry) -> None:
        assert host.http is not None
        self.host = host
        self.sessions = Sessions(host.http.token, 0)
        self.view = View(host, registry)
        self.streams: set[Any] = set()
        self.draining = False

    @property
    def session(self) -> Dashboard:
        return self

    def link_code(self) -> str:
        """A one-time sign-in link's code (``bicameral dashboard`` asks for one)."""
        return self.sessions.new_link()

    def drain(self) -> None:
        """The listener is stopping: end the event streams."""
        self.draining = True
        for scope in list(self.streams):
            scope.cancel()

    # -- the guard ---------------------------------------------------------------------

    def admits(self, scope: dict[str, Any], headers: Mapping[str, str]) -> bool:
        self.sessions.port = self.host.http.port if self.host.http is not None else 0
        if scope.get("path") in _PUBLIC:
            return True
        return self.sessions.get(headers) is not None

    async def refuse(self, scope: dict[str, Any], send: Any) -> None:
        if scope.get("method") == "GET":
            await _redirect(send, "/dashboard/signin")
        else:
            await _respond(send, 403, "forbidden: sign in first\n", "text/plain; charset=utf-8")

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, method = scope.get("path", ""), scope.get("method", "GET")
        headers = _headers(scope)
        self.sessions.port = self.host.http.port if self.host.http is not None else 0
        if method == "POST":
            origin, host = headers.get("origin"), headers.get("host")
            if origin is None or host is None or origin.lower() != f"http://{host.lower()}":
                await _respond(send, 403, "forbidden: cross-origin\n", "text/plain")
                return
        session = self.sessions.get(headers)
        route = (method, path)
        if route == ("GET", "/"):
            await self._page(send, session)
        elif route == ("GET", "/dashboard/style.css"):
            await _respond(send, 200, STYLE, "text/css; charset=utf-8")
        elif route == ("GET", "/dashboard/icon.svg"):
            await _respond(send, 200, ICON, "image/svg+xml")
        elif route == ("GET", "/dashboard/app.js"):
            await _respond(send, 200, SCRIPT, "text/javascript; charset=utf-8")
        elif route == ("GET", "/dashboard/signin"):
            await _respond(send, 200, signin_page())
        elif route == ("POST", "/dashboard/signin"):
            await self._signin(receive, send)
        elif route == ("GET", "/dashboard/link"):
            code = parse_qs(scope.get("query_string", b"").decode()).get("code", [""])[0]
            if self.sessions.use_link(code):
                sid, _ = self.sessions.open()
                await _redirect(send, "/", self.sessions.cookie(sid))
            else:
                await _respond(send, 403, signin_page("That link was used or has expired."))
        elif route == ("POST", "/dashboard/signout") and session is not None:
            await self._signout(receive, send, session, headers)
        elif route == ("GET", "/dashboard/events") and session is not None:
            await self._events(receive, send, headers)
        elif route == ("GET", "/dashboard/state") and session is not None:
            await _json(send, 200, await self.view.build())
        elif route == ("GET", "/dashboard/stderr") and session is not None:
            query = parse_qs(scope.get("query_string", b"").decode())
            name = query.get("server", [""])[0]
            await _respond(send, 200, render_stderr(name, await self.view.stderr(name)))
        elif route == ("POST", "/dashboard/action") and session is not None:
            await self._action(receive, send, session, headers)
        else:
            await _respond(send, 404, f"not found: {path}\n", "text/plain")

    async def _page(self, send: Any, session: Session | None) -> None:
        if session is None:
            await _redirect(send, "/dashboard/signin")
            return
        await _respond(send, 200, page(session.csrf, render(await self.view.build())))

    async def _signin(self, receive: Any, send: Any) -> None:
        body = await _body(receive)
        token = parse_qs((body or b"").decode(errors="replace")).get("token", [""])[0]
        if not self.sessions.check_token(token):
            await _respond(send, 401, signin_page("That is not the listener's token."))
            return
        sid, _ = self.sessions.open()
        await _redirect(send, "/", self.sessions.cookie(sid))

    async def _signout(
        self, receive: Any, send: Any, session: Session, headers: Mapping[str, str]
    ) -> None:
        body = parse_qs(((await _body(receive)) or b"").decode(errors="replace"))
        if not Sessions.csrf_ok(session, body.get("csrf", [None])[0]):
            await _respond(send, 403, "forbidden: bad CSRF token\n", "text/plain")
            return
        self.sessions.close(self.sessions.session_id(headers))
        await _redirect(send, "/dashboard/signin", self.sessions.cookie(None))

    async def _action(
        self, receive: Any, send: Any, session: Session, headers: Mapping[str, str]
    ) -> None:
        raw = await _body(receive)
        if raw is None:
            await _json(send, 413, {"ok": False, "error": "request too large"})
            return
        form = parse_qs(raw.decode(errors="replace"))
        offered = headers.get("x-csrf-token") or form.get("csrf", [None])[0]
        if not Sessions.csrf_ok(session, offered):
            await _json(send, 403, {"ok": False, "error": "forbidden: bad CSRF token"})
            return
        action = form.get("action", [""])[0]
        server = form.get("server", [""])[0]
        if action not in _ACTIONS or not server:
            await _json(send, 400, {"ok": False, "error": "expected server and action"})
            return
        request = ("dashboard", f"adapters.{action}", {"name": server}, False)
        answer = await self.host.dispatcher.execute(request, None)  # type: ignore[arg-type]
        if answer is not None and "error" in answer:
            await _json(send, 409, {"ok": False, "error": answer["error"].get("message")})
            return
        await _json(send, 200, {"ok": True, "server": server, "action": action})

    async def _events(self, receive: Any, send: Any, headers: Mapping[str, str]) -> None:
        import trio

        if len(self.streams) >= MAX_STREAMS or self.draining:
            await _respond(send, 503, "too many dashboards open\n", "text/plain")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        sid = self.sessions.session_id(headers)

        async def until_disconnect(scope: trio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        with trio.CancelScope() as scope:
            self.streams.add(scope)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(until_disconnect, scope)
                    await self._stream(send, sid)
                    nursery.cancel_scope.cancel()
            finally:
                self.streams.discard(scope)
        with trio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Any, sid: str | None) -> None:
        import trio

        seen: Any = None
        built = 0.0
        while True:
            if self.sessions.live(sid) is None:  # signed out meanwhile
                body = b"event: signin\ndata: {}\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
                return
            mark = self.view.fingerprint()
            now = time.monotonic()
            if mark != seen or now - built >= REFRESH:
                parts = render(await self.view.build())
                data = f"event: update\ndata: {json.dumps(parts)}\n\n".encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
                seen, built = mark, now
            await trio.sleep(TICK)
