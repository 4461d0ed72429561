"""The daemon's HTTP listener: health, readiness, metrics, and what plugins mount.

Off by default; on with ``[daemon.http] listen = "127.0.0.1:8765"`` in
config.toml, or ``--http HOST:PORT`` on ``daemon serve`` (and on ``daemon
start``, which passes it on to the daemon it spawns).

The daemon owns the listener and its guards; the layers above mount ASGI
apps under a path prefix (the MCP layer mounts ``/mcp``) and add metrics
collectors. What every request passes, in order:

1. ``/healthz`` and ``/readyz`` answer anyone: a platform's probes carry
   no token and name the pod by address.
2. ``Host`` and ``Origin`` must be the listener's own (or configured as
   allowed), else 403: a web page the user visits cannot reach the daemon
   through the browser by rebinding a name of its own to 127.0.0.1.
3. ``Authorization: Bearer <token>`` (the token in ``http.token``, 0600,
   made once) on everything but the probes, else 401; ``/metrics`` too,
   unless ``metrics_public = true``. A mounted app that signs people in
   itself (it has a ``session`` :class:`SessionGuard`: the dashboard, at
   ``/``) admits a request by that session instead, and answers one it
   does not admit its own way (a redirect to its sign-in page).

The listener is hypercorn on the daemon's own Trio loop. The socket is bound
before the daemon reports ready (a port in use is a start failure with a
one-line reason); hypercorn is imported after, so the listener costs the
path to readiness only the bind. On a graceful stop it is the first child to
stop: it stops accepting, gives in-flight requests `HTTP_GRACE` seconds,
then closes what is still open (long-lived event streams).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bicameral.daemon._errors import ConfigError, DaemonError
from bicameral.protocol import BACKLOG

TICKET = "bicameral.connection"
"""Where a request's ``scope["state"]`` holds its connection's admission ticket."""

__all__ = [
    "HTTP_KEYS",
    "HttpListener",
    "HttpSettings",
    "SessionGuard",
    "http_from_config",
    "listener_token",
    "parse_listen",
    "read_http_token",
]

logger = logging.getLogger("bicameral.daemon")

TOKEN_ENV = "BICAMERAL_HTTP_TOKEN"
"""The listener's token itself, for a platform that injects secrets as variables."""
TOKEN_FILE = "http.token"
STRANGER_MIN_AGE = 0.5
"""Seconds a connection without the token is safe from being dropped for a newer one."""
MIN_TOKEN = 32
"""Characters a token must have at least (ours are 64 hex digits)."""
HTTP_GRACE = 5.0
"""Seconds in-flight HTTP requests get to finish when the daemon stops."""

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

HTTP_KEYS: dict[str, type] = {
    "listen": str,
    "allow_remote": bool,
    "require_token": bool,
    "metrics_public": bool,
    "allowed_hosts": list,
    "allowed_origins": list,
    "max_unauthenticated": int,
    "auth_timeout": float,
    "header_timeout": float,
    "body_timeout": float,
    "idle_timeout": float,
    "token_file": str,
    "session_id_header": str,
}
"""The keys of ``[daemon.http]``."""


class SessionGuard(Protocol):
    """How a mounted app for people (a browser, not an MCP client) admits requests.

    The listener asks `admits` instead of requiring the bearer token (a
    browser cannot send one), after its ``Host`` / ``Origin`` checks; a
    request it does not admit is handed to `refuse`.
    """

    def admits(self, scope: dict[str, Any], headers: Mapping[str, str]) -> bool: ...

    async def refuse(self, scope: dict[str, Any], send: Any) -> None: ...


@dataclass(frozen=True)
class HttpSettings:
    """Where and how the HTTP listener serves (docs/configuration.md, ``[daemon.http]``)."""

    host: str
    port: int
    allow_remote: bool = False
    require_token: bool = True
    metrics_public: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: Connections that have not shown the token yet, at most (the oldest is
    #: dropped past it; fewer when the descriptor table is small).
    max_unauthenticated: int = 512
    #: Seconds a connection has to show the token.
    auth_timeout: float = 10.0
    #: Seconds a request's headers may take from its first byte.
    header_timeout: float = 10.0
    #: Seconds a request's body may take after its headers.
    body_timeout: float = 30.0
    #: Seconds a connection may stay idle between requests.
    idle_timeout: float = 75.0
    #: The token from this file (a mounted secret) instead of ``<home>/http.token``.
    token_file: str | None = None
    #: A header a trusted proxy sets on ``initialize``: the new session's id,
    #: which is also the proxy's hash key, so the session's later requests
    #: come back here (docs/hosting.md, "Affinity").
    session_id_header: str | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; ValueError otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, not {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"listen address must be HOST:PORT, not {text!r}")
    return host, port


def http_from_config(
    config: Mapping[str, Any], path: Path | None, override: str | None = None
) -> HttpSettings | None:
    """``[daemon.http]`` of config.toml, with ``--http`` as `override`.

    ``None`` when no listener is configured. Raises :class:`ConfigError`
    naming the file and the key for anything unknown or invalid, and for a
    non-loopback address without ``allow_remote = true``.
    """
    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    table = section.get("http", {}) if isinstance(section, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.http] must be a table")
    for key, given in table.items():
        kind = HTTP_KEYS.get(key)
        value = float(given) if kind is float and type(given) is int else given
        if kind is None:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.http] (known: {', '.join(HTTP_KEYS)})"
            )
        positive = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if (
            not isinstance(value, kind)
            or (isinstance(value, list) and not all(isinstance(v, str) for v in value))
            or (kind in (int, float) and not positive)
        ):
            what = {
                str: "a string",
                bool: "true or false",
                list: "a list of strings",
                int: "a positive integer",
                float: "a positive number of seconds",
            }[kind]
            raise ConfigError(f"{where}: [daemon.http] {key} must be {what}, not {value!r}")
    listen = override or table.get("listen")
    if not listen:
        return None
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        source = "--http" if override else f"{where}: [daemon.http] listen"
        raise ConfigError(f"{source}: {exc}") from None
    settings = HttpSettings(
        host=host,
        port=port,
        allow_remote=bool(table.get("allow_remote", False)),
        require_token=bool(table.get("require_token", True)),
        metrics_public=bool(table.get("metrics_public", False)),
        allowed_hosts=tuple(str(h) for h in table.get("allowed_hosts", ())),
        allowed_origins=tuple(str(o) for o in table.get("allowed_origins", ())),
        **{k: HTTP_KEYS[k](table[k]) for k in _BOUNDS if k in table},
        token_file=table.get("token_file") or None,
        session_id_header=(table.get("session_id_header") or "").lower() or None,
    )
    if not settings.loopback and not settings.allow_remote:
        raise ConfigError(
            f"the HTTP listener would bind {host}, which is not a loopback address: "
            f"set allow_remote = true in [daemon.http] of {where} to serve other machines"
        )
    if not settings.require_token and not settings.loopback:
        raise ConfigError(
            f"{where}: [daemon.http] require_token = false is only allowed on a loopback address"
        )
    return settings


_SINGLE = frozenset({"host", "origin", "authorization"})
"""Headers a request may carry once: a second one is refused, not silently preferred."""

_BOUNDS = ("max_unauthenticated", "auth_timeout", "header_timeout", "body_timeout", "idle_timeout")


def read_http_token(home: Path, *, create: bool = False) -> str | None:
    """The listener's bearer token from ``<home>/http.token`` (made, 0600, when `create`).

    A token file another user could have written, or that others can read,
    is refused: a token we did not make would let its maker in.
    """
    path = home / TOKEN_FILE
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        if not create:
            return None
        from bicameral.daemon._files import write_atomic

        token = os.urandom(32).hex()
        try:
            write_atomic(path, (token + "\n").encode(), mode=0o600)
        except OSError as exc:
            raise DaemonError(f"cannot write the HTTP token: {exc.strerror}") from None
        return token
    except OSError as exc:
        raise DaemonError(f"cannot read the HTTP token {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DaemonError(f"{path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise DaemonError(f"{path} belongs to another user; remove it")
        if st.st_mode & 0o077:
            raise DaemonError(
                f"{path} is readable by others (mode {st.st_mode & 0o777:o}); remove it"
            )
        token = f.read(256).decode("ascii", "replace").strip()
    if len(token) < MIN_TOKEN:
        raise DaemonError(f"{path} does not hold a token; remove it and restart the daemon")
    return token


def listener_token(settings: HttpSettings, home: Path, env_token: str | None) -> str:
    """The token the listener requires, from the first source that is set.

    1. `env_token` (``$BICAMERAL_HTTP_TOKEN``, which `ServeOptions` takes out
       of the environment so no MCP server inherits it);
    2. ``[daemon.http] token_file``: a file the operator names, typically a
       mounted secret. Unlike ``http.token`` it may be readable by others
       (a Kubernetes secret is 0644 unless told otherwise), but it must
       belong to root or to us and nobody else may write it;
    3. ``<home>/http.token``, made (0600) at the first start.

    A token shorter than `MIN_TOKEN` characters, or with spaces or
    non-ASCII characters (it goes in a header), is refused.
    """
    if env_token is not None:
        return _check_token(env_token.strip(), f"${TOKEN_ENV}")
    if settings.token_file is not None:
        return _check_token(_read_token_file(Path(settings.token_file)), settings.token_file)
    token = read_http_token(home, create=True)
    assert token is not None
    return token


def _read_token_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DaemonError(
            f"[daemon.http] token_file {path}: cannot read it: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DaemonError(f"[daemon.http] token_file {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid not in (0, os.getuid()):
            raise DaemonError(
                f"[daemon.http] token_file {path} belongs to uid {st.st_uid}, "
                "neither root nor this user"
            )
        if st.st_mode & 0o022:
            raise DaemonError(
                f"[daemon.http] token_file {path} is writable by group or others "
                f"(mode {st.st_mode & 0o777:o}); run: chmod go-w {path}"
            )
        return f.read(1024).decode("ascii", "replace").strip()


def _check_token(token: str, source: str) -> str:
    if len(token) < MIN_TOKEN:
        raise DaemonError(
            f"{source}: the HTTP token must have at least {MIN_TOKEN} characters "
            "(for example: openssl rand -hex 32)"
        )
    if not all(33 <= ord(c) < 127 for c in token):
        raise DaemonError(f"{source}: the HTTP token must be printable ASCII without spaces")
    return token


@dataclass
class HttpListener:
    """The listener: the guards, the probes, ``/metrics`` and the mounted apps.

    `ready` and `stopping` are callables the daemon provides (``/readyz``);
    `mounts` maps a path prefix to an ASGI app; `collectors` are
    ``prometheus_client`` collectors, registered on first scrape.
    """

    settings: HttpSettings
    token: str | None
    ready: Callable[[], bool]
    stopping: Callable[[], bool]
    #: Requests served at once at most (the daemon's ``max_connections``);
    #: past it a request gets 503 at once, so no flood holds unbounded memory.
    max_requests: int
    mounts: dict[str, ASGIApp] = field(default_factory=dict)
    collectors: list[Any] = field(default_factory=list)
    #: Why the daemon is not ready to take traffic yet although it runs (its
    #: servers' first start, say): each returns a reason, or None. ``/readyz``
    #: answers 503 ``starting: <reason>`` while one has a reason.
    warming: list[Callable[[], str | None]] = field(default_factory=list)
    #: What ``/readyz`` adds under ``ready``: what works less than it should
    #: (an unreachable store). Still 200: the daemon serves what it can.
    problems: Callable[[], list[str]] | None = None
    #: Called when the graceful stop begins, to end long-lived streams.
    on_drain: list[Callable[[], None]] = field(default_factory=list)
    active: int = 0
    port: int = 0
    #: Set once the listener has drained (or never started): what stops
    #: after it (the servers its requests were calling) waits for it.
    drained: Any = None
    #: The daemon's descriptor table (`FdTable`): the connections' budget.
    fds: Any = None
    _registry: Any = None

    # -- the socket -------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Bind the configured address; a one-line `DaemonError` when it cannot."""
        host = self.settings.host
        try:
            infos = socket.getaddrinfo(
                host, self.settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            raise DaemonError(f"HTTP listener: cannot resolve {host!r}: {exc}") from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.set_inheritable(False)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = (
                    "; choose another port, or port 0 for any free one "
                    f"(--http {self.url_host()}:0; `bicameral mcp http` prints the URL)"
                )
            raise DaemonError(
                f"HTTP listener: cannot listen on {self.url_host()}:{self.settings.port}: "
                f"{exc.strerror}{hint}"
            ) from None
        self.port = sock.getsockname()[1]
        return sock

    def url_host(self) -> str:
        host = self.settings.host
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        return f"http://{self.url_host()}:{self.port}"

    # -- the child ----------------------------------------------------------------

    async def run(self, sock: socket.socket, stopping: Any, task_status: Any) -> None:
        """Serve on `sock` until `stopping` is set, then drain (`HTTP_GRACE`)."""
        import trio
        from hypercorn.config import Config
        from hypercorn.utils import wrap_app

        from bicameral.daemon._http_serve import HttpTimeouts, serve_http
        from bicameral.protocol import Admission

        if self.drained is None or self.drained.is_set():
            self.drained = trio.Event()
        config = Config()
        config.graceful_timeout = HTTP_GRACE
        config.accesslog = None
        config.errorlog = logging.getLogger("bicameral.http")
        config.h2_max_inbound_frame_size = 2**16
        settings = self.settings
        trusted, strangers = self.caps()
        admission = Admission(
            max_connections=trusted,
            max_strangers=strangers,
            auth_timeout=settings.auth_timeout,
            min_age=STRANGER_MIN_AGE,
            what="HTTP",
        )
        timeouts = HttpTimeouts(
            header=settings.header_timeout, body=settings.body_timeout, idle=settings.idle_timeout
        )

        def drain() -> None:
            for end in self.on_drain:
                end()

        app = wrap_app(self, None, "asgi")  # type: ignore[arg-type]
        task_status.started()
        try:
            await serve_http(
                sock,
                app,
                config=config,
                admission=admission,
                timeouts=timeouts,
                stopping=stopping,
                grace=HTTP_GRACE,
                on_drain=drain,
            )
        finally:
            self.drained.set()

    def caps(self) -> tuple[int, int]:
        """Connections with and without the token at most, within the descriptors' budget.

        The owner's connections are bounded by descriptors alone (what they
        may have in flight is `max_requests`, answered 503 past it).
        """
        strangers = self.settings.max_unauthenticated
        budget = self.fds.connection_budget() if self.fds is not None else 2**16
        strangers = max(1, min(strangers, budget // 2))
        trusted = max(1, budget - strangers)
        return trusted, strangers

    async def wait_drained(self) -> None:
        """Until the listener has finished its requests after a stop (at most `HTTP_GRACE`)."""
        if self.drained is not None:
            await self.drained.wait()

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        path: str = scope.get("path", "")
        if path == "/healthz":
            await _text(send, 200, "ok\n")
            return
        if path == "/readyz":
            if self.stopping():
                await _text(send, 503, "stopping\n")
            elif not self.ready():
                await _text(send, 503, "starting\n")
            elif reason := next((r for check in self.warming if (r := check())), None):
                await _text(send, 503, f"starting: {reason}\n")
            else:
                notes = self.problems() if self.problems is not None else []
                await _text(send, 200, "".join(f"{line}\n" for line in ["ready", *notes]))
            return
        headers: dict[str, str] = {}
        repeated = set()
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in headers and name in _SINGLE:
                repeated.add(name)
            headers[name] = v.decode("latin-1")
        app, prefix = self._mounted(path)
        if app is None and path != "/metrics":
            await _text(send, 404, f"not found: {path}\n")
            return
        refusal = self._foreign(headers, repeated)
        if refusal is not None:
            logger.warning("HTTP listener: refused %s %s: %s", scope.get("method"), path, refusal)
            await _text(send, 403, f"forbidden: {refusal}\n")
            return
        authorized = self._authorized(headers)
        if app is None:  # /metrics
            if not self.settings.metrics_public and not authorized:
                await _unauthorized(send)
                return
        elif self.settings.require_token and not authorized:
            session: SessionGuard | None = getattr(app, "session", None)
            if session is None:
                await _unauthorized(send)
                return
            if not session.admits(scope, headers):
                await session.refuse(scope, send)
                return
            authorized = True  # a session the app admits is a credential too
        if authorized or (app is not None and not self.settings.require_token):
            # The connection is the owner's (or the token is off, loopback
            # only): no longer a stranger (bicameral/daemon/_http_serve.py).
            ticket = scope.get("state", {}).get(TICKET)
            if ticket is not None:
                ticket.authenticated()
        if app is None:
            await self._metrics(send)
            return
        if self.active >= self.max_requests:
            await _text(send, 503, "busy: too many requests in flight\n", [(b"retry-after", b"1")])
            return
        self.active += 1
        try:
            await app({**scope, "root_path": prefix}, receive, send)
        finally:
            self.active -= 1

    def _mounted(self, path: str) -> tuple[ASGIApp | None, str]:
        for prefix, app in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app, prefix
        return None, ""

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        import hmac

        if self.token is None:
            return False
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def _own_hosts(self) -> set[str]:
        port = self.port
        names = {self.url_host()}
        if self.settings.loopback:
            names |= {"localhost", "127.0.0.1", "[::1]"}
        return {f"{n}:{port}" for n in names} | set(self.settings.allowed_hosts)

    def _foreign(self, headers: Mapping[str, str], repeated: set[str]) -> str | None:
        """Why `headers` name a host or origin that is not ours (None: they do not)."""
        if repeated:
            return f"more than one {', '.join(sorted(repeated))} header"
        own = self._own_hosts()
        host = headers.get("host")
        check_host = self.settings.loopback or bool(self.settings.allowed_hosts)
        if check_host and (host is None or host.lower() not in own):
            return f"Host {host!r} is not this listener"
        origin = headers.get("origin")
        if origin is not None and origin not in self.settings.allowed_origins:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or (check_host and rest.lower() not in own):
                return f"Origin {origin!r} is not allowed"
            if not check_host and host is not None and rest.lower() != host.lower():
                return f"Origin {origin!r} does not match Host {host!r}"
        return None

    async def _metrics(self, send: Any) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self._prometheus())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _prometheus(self) -> Any:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            registry = CollectorRegistry(auto_describe=False)
            ProcessCollector(namespace="bicameral", registry=registry)
            for collector in self.collectors:
                registry.register(collector)
            self._registry = registry
        return self._registry


async def _text(send: Any, status: int, text: str, headers: list[Any] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


async def _unauthorized(send: Any) -> None:
    await _text(
        send,
        401,
        "unauthorized: send Authorization: Bearer <token> (`bicameral mcp http` prints it)\n",
        [(b"www-authenticate", b'Bearer realm="bicameral"')],
    )
