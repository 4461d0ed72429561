"""Who may use the dashboard: sign-in with the token once, then a session cookie.

A person signs in by pasting the listener's token into the form, or by
opening a one-time link that ``bicameral dashboard`` asks the daemon for.
Either way the answer sets a cookie that is ``HttpOnly`` (no script reads
it), ``SameSite=Strict`` (no other site's page sends it) and named after
the listener's port (two daemons on one host keep theirs apart), holding a
random session id. Each session has its own CSRF token, which every
state-changing request must carry, besides the listener's own ``Origin``.

Everything is in memory and bounded: at most `MAX_SESSIONS` sessions
(the oldest goes first) and `MAX_LINKS` unused links, which expire after
`LINK_TTL` seconds and work once. A daemon restart signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LINK_TTL", "MAX_LINKS", "MAX_SESSIONS", "SESSION_TTL", "Session", "Sessions"]

MAX_SESSIONS = 64
MAX_LINKS = 16
#: Seconds a one-time link stays usable.
LINK_TTL = 120.0
#: Seconds a session lasts (it is renewed by use).
SESSION_TTL = 12 * 3600.0


@dataclass
class Session:
    csrf: str
    expires: float


class Sessions:
    """The dashboard's sessions and one-time links, checked against the listener's `token`."""

    def __init__(self, token: str | None, port: int) -> None:
        self.token = token
        self.port = port
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._links: OrderedDict[str, float] = OrderedDict()

    @property
    def cookie_name(self) -> str:
        return f"bicameral_{self.port}"

    def check_token(self, offered: str) -> bool:
        """Whether `offered` is the listener's token (in constant time)."""
        if self.token is None:
            return False
        return hmac.compare_digest(offered.strip().encode(), self.token.encode())

    def open(self) -> tuple[str, Session]:
        """A new session: its id (the cookie's value) and its CSRF token."""
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = self._sessions[sid] = Session(secrets.token_urlsafe(24), time.monotonic())
        session.expires = time.monotonic() + SESSION_TTL
        return sid, session

    def close(self, sid: str | None) -> None:
        if sid is not None:
            self._sessions.pop(sid, None)

    def session_id(self, headers: Mapping[str, str]) -> str | None:
        """The session id the request's cookie names, if any."""
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie_name and value:
                return value
        return None

    def get(self, headers: Mapping[str, str]) -> Session | None:
        """The live session of the request, renewed; ``None`` when it has none."""
        return self.live(self.session_id(headers))

    def live(self, sid: str | None) -> Session | None:
        """Session `sid` if it is still signed in, renewed; else ``None``."""
        session = self._sessions.get(sid) if sid is not None else None
        if session is None or sid is None:
            return None
        now = time.monotonic()
        if session.expires < now:
            del self._sessions[sid]
            return None
        session.expires = now + SESSION_TTL
        self._sessions.move_to_end(sid)
        return session

    def cookie(self, sid: str | None) -> bytes:
        """The ``Set-Cookie`` value for session `sid` (``None``: clear it)."""
        attributes = "Path=/; HttpOnly; SameSite=Strict"
        if sid is None:
            return f"{self.cookie_name}=; {attributes}; Max-Age=0".encode()
        return f"{self.cookie_name}={sid}; {attributes}; Max-Age={int(SESSION_TTL)}".encode()

    def new_link(self) -> str:
        """A code for a one-time sign-in link (``/dashboard/link?code=...``)."""
        now = time.monotonic()
        for code, expires in list(self._links.items()):
            if expires < now:
                del self._links[code]
        while len(self._links) >= MAX_LINKS:
            self._links.popitem(last=False)
        code = secrets.token_urlsafe(32)
        self._links[code] = now + LINK_TTL
        return code

    def use_link(self, code: str) -> bool:
        """Whether `code` is a live link; it is spent either way."""
        expires = self._links.pop(code, None)
        return expires is not None and expires >= time.monotonic()

    @staticmethod
    def csrf_ok(session: Session, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), session.csrf.encode())
