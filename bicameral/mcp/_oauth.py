"""OAuth for remote MCP servers: the daemon holds the tokens and alone refreshes them.

The flow itself is the official SDK's (`mcp.client.auth.OAuthClientProvider`):
RFC 9728 protected resource metadata (from ``WWW-Authenticate`` or the well-
known URL), authorization server metadata, client registration (a
pre-registered ``client_id``, else a Client ID Metadata Document where the
server supports one and one is configured, else dynamic registration),
authorization code with PKCE, RFC 8707 resource indicators, the RFC 9207
issuer check, and refresh. What bicameral adds:

* **One owner of the tokens.** ``bicameral mcp login NAME`` runs the browser
  flow once, in the CLI, with a loopback redirect; the tokens (and the
  client registration) go to ``tokens/NAME.json`` in the state directory
  (0600, written atomically). From then on only the daemon uses them: one
  `OAuthClientProvider` per server, shared by all its instances, whose lock
  makes one refresh at a time; concurrent clients never race a refresh.
* **No login in the daemon.** When the daemon would need a person (no
  tokens, or a refresh the server refused), the server shows
  ``needs-login`` and its calls fail with the command to run.
* **Every endpoint checked before use** (`check_endpoint`): ``https://``, or
  ``http://`` to a loopback address, and nothing that could be run: the
  authorization URL is printed, and handed to a browser only through
  Python's `webbrowser`, never a shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.oauth2 import TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from bicameral.daemon import write_atomic
from bicameral.mcp._config import ServerConfig, check_url, token_path
from bicameral.platform import CURRENT

__all__ = [
    "NeedsLogin",
    "TokenFile",
    "check_endpoint",
    "daemon_provider",
    "login",
    "show_url",
    "token_path",
]

#: The redirect URI registered for a login (its port is chosen at login time).
CALLBACK_PATH = "/callback"
#: How long `login` waits for the browser to come back.
LOGIN_WAIT = 300.0


class NeedsLogin(Exception):
    """The server needs a person to log in (``bicameral mcp login NAME``)."""


def check_endpoint(url: str) -> None:
    """Refuse an OAuth endpoint URL that is not ``https://`` (or loopback ``http://``).

    Raises `ValueError` naming the URL. Also refuses whitespace and control
    characters: the URL is only ever printed or handed to `webbrowser`.
    """
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"refusing an OAuth endpoint with spaces or control characters: {url!r}")
    problem = check_url(url)
    if problem is not None:
        raise ValueError(f"refusing the OAuth endpoint {url!r}: it {problem}")


def _keyring() -> Any:
    """The OS keyring (`keyring`), or None where there is none to use.

    A headless Linux box usually has no Secret Service: then `keyring`'s
    chosen backend is its "fail" one, and the tokens go to the file.
    """
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return keyring


class TokenFile(TokenStorage):
    """A server's tokens and client registration, owner-only.

    The tokens go to the OS keyring where there is one (service
    ``bicameral``, user ``<state dir>/<server>``); the file then holds the
    client registration, the expiry and ``"keyring": true``. Without a
    keyring the tokens are in the file too (0600, in a 0700 directory).
    Either way the file is rewritten on every change: its modification time
    tells the daemon that ``mcp login`` or ``logout`` happened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Named by the state dir's real path: the daemon reaches it through a held
        # directory (/proc/self/fd/N on Linux), the CLI by its name.
        self._account = str(Path(os.path.realpath(path.parent.parent)) / path.stem)
        #: The file as this object last saw or wrote it (`changed_elsewhere`).
        self.seen = self._stamp()

    def _stamp(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def modified(self) -> float | None:
        """When the file was last written (epoch seconds; None: there is none)."""
        stamp = self._stamp()
        return stamp / 1e9 if stamp is not None else None

    def changed_elsewhere(self) -> bool:
        """Whether someone else (``mcp login`` or ``logout``) rewrote the file since."""
        return self._stamp() != self.seen

    def expires_at(self) -> float | None:
        """When the stored access token expires (epoch seconds), if known."""
        value = self._read().get("expires_at")
        return float(value) if isinstance(value, int | float) else None

    def where(self) -> str:
        """Where the tokens are kept, for people."""
        return "the OS keyring" if self._read().get("keyring") else str(self.path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        os.makedirs(self.path.parent, mode=0o700, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=2).encode())
        self.seen = self._stamp()

    async def get_tokens(self) -> OAuthToken | None:
        data = self._read()
        raw: Any = data.get("tokens")
        if data.get("keyring"):
            ring = _keyring()
            secret = ring.get_password("bicameral", self._account) if ring else None
            raw = json.loads(secret) if secret else None
        return OAuthToken.model_validate(raw) if isinstance(raw, dict) else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        data = self._read()
        dumped = tokens.model_dump(mode="json", exclude_none=True)
        ring = _keyring()
        if ring is not None:
            ring.set_password("bicameral", self._account, json.dumps(dumped))
            data.pop("tokens", None)
            data["keyring"] = True
        else:
            data["tokens"] = dumped
            data.pop("keyring", None)
        # Absolute, so that whoever loads them later knows when to refresh.
        if tokens.expires_in is not None:
            data["expires_at"] = time.time() + tokens.expires_in
        else:
            data.pop("expires_at", None)
        self._write(data)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        raw = self._read().get("client")
        return OAuthClientInformationFull.model_validate(raw) if isinstance(raw, dict) else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        data = self._read()
        data["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._write(data)

    def want_scope(self, scope: str | None) -> None:
        """Record the scope a step-up asked for (SEP-2350), for the next `login` to request."""
        data = self._read()
        if scope and data.get("step_up") != scope:
            data["step_up"] = scope
            self._write(data)

    def wanted_scope(self) -> str | None:
        """The scope a step-up asked for and no login has granted yet, if any."""
        value = self._read().get("step_up")
        return value if isinstance(value, str) and value else None

    def forget_tokens(self) -> None:
        """Drop the tokens, keep the client registration (a login that must ask again)."""
        data = self._read()
        if data.pop("keyring", None):
            ring = _keyring()
            if ring is not None:
                with contextlib.suppress(Exception):
                    ring.delete_password("bicameral", self._account)
        data.pop("tokens", None)
        data.pop("expires_at", None)
        self._write(data)

    def step_up_done(self) -> None:
        data = self._read()
        if data.pop("step_up", None) is not None:
            self._write(data)

    def forget_client(self) -> None:
        data = self._read()
        if data.pop("client", None) is not None:
            self._write(data)

    def forget(self) -> bool:
        """Delete the tokens (keyring and file); whether there were any."""
        data = self._read()
        if data.get("keyring"):
            ring = _keyring()
            if ring is not None:
                with contextlib.suppress(Exception):
                    ring.delete_password("bicameral", self._account)
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def _metadata(config: ServerConfig, redirect_uri: str) -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="bicameral",
        redirect_uris=[redirect_uri],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope=config.scope,
    )


async def _preregistered(config: ServerConfig, storage: TokenFile, redirect_uri: str) -> None:
    """A configured ``client_id``: registered already, the flow must not register again."""
    if config.client_id is None:
        return
    from bicameral.mcp._config import expand_env

    try:
        secret = expand_env(config.client_secret, os.environ) if config.client_secret else None
    except KeyError as exc:
        raise ValueError(
            f"cannot read the client_secret of {config.name!r}: {exc.args[0]}"
        ) from None
    known = await storage.get_client_info()
    if known is None or known.client_id != config.client_id or known.client_secret != secret:
        fields = _metadata(config, redirect_uri).model_dump(exclude_none=True)
        # A secret is sent the way RFC 6749 §2.3.1 says every server supports.
        fields["token_endpoint_auth_method"] = "client_secret_basic" if secret else "none"
        await storage.set_client_info(
            OAuthClientInformationFull(client_id=config.client_id, client_secret=secret, **fields)
        )


def daemon_provider(
    config: ServerConfig,
    home: Path,
    on_needs_login: Callable[[str], None],
    store: Any = None,
) -> OAuthClientProvider:
    """The daemon's provider for `config`: refreshes, never asks a person.

    Where the flow would need one, `on_needs_login` is told what to run.
    With `store` (the daemon's `SharedStore`), the tokens are the replicas'
    shared ones and a refresh is one for all of them (`_shared_oauth`).
    """

    async def needs_person(url: str) -> None:
        what = "a login"
        if provider.context.current_tokens is not None:
            # A step-up (HTTP 403, insufficient_scope): the URL asks for the
            # union of the granted and the challenged scope (SEP-2350); the
            # next login asks for it too.
            scope = parse_qs(urlsplit(url).query).get("scope", [""])[0]
            storage.want_scope(scope)
            what = f"a login for more scope ({scope})" if scope else what
        message = (
            f"MCP server {config.name!r} needs {what}: run `bicameral mcp login {config.name}`"
        )
        on_needs_login(message)
        raise NeedsLogin(message)

    async def no_callback() -> Any:  # never reached: needs_person raises first
        raise NeedsLogin(f"run `bicameral mcp login {config.name}`")

    storage = TokenFile(token_path(home, config.name))
    options: dict[str, Any] = {
        "server_url": str(config.url),
        "client_metadata": _metadata(config, f"http://127.0.0.1{CALLBACK_PATH}"),
        "redirect_handler": needs_person,
        "callback_handler": no_callback,
        "client_metadata_url": config.client_metadata_url,
    }
    if store is not None:
        from bicameral.mcp._shared_oauth import SharedRefreshProvider, StoreTokens

        return SharedRefreshProvider(shared=StoreTokens(store, config.name, storage), **options)
    provider = OAuthClientProvider(storage=storage, **options)
    # The SDK learns an access token's expiry only when it receives one; for
    # stored tokens, tell it, so that it refreshes before the server refuses.
    provider.context.token_expiry_time = storage.expires_at()
    return provider


async def _callback_server(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    arrived: MemoryObjectSendStream[dict[str, str]],
) -> None:
    """Serve the loopback redirect: each GET with ``code`` (or ``error``) and ``state``.

    Each goes to `arrived` (a login may take more than one authorization: a
    scope step-up asks again); serves until cancelled.
    """

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = await stream.receive(4096)
                    if not chunk:
                        break
                    data += chunk
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            target = parts[1] if len(parts) >= 2 else ""
            query = parse_qs(urlsplit(target).query)
            ok = urlsplit(target).path == CALLBACK_PATH and ("code" in query or "error" in query)
            body = (
                b"bicameral: logged in. You can close this window.\n"
                if ok and "code" in query
                else b"bicameral: this is not the login callback.\n"
            )
            status = b"200 OK" if ok else b"404 Not Found"
            await stream.send(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\n"
                b"content-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            if ok:
                with contextlib.suppress(anyio.WouldBlock):
                    arrived.send_nowait({k: v[0] for k, v in query.items()})

    await listener.serve(handle)


async def login(
    config: ServerConfig,
    home: Path,
    show: Callable[[str], Awaitable[None]],
) -> None:
    """Run the browser flow for `config` and store its tokens (the CLI's `mcp login`).

    `show` is given the authorization URL (checked with `check_endpoint`)
    to print and, where possible, open. Raises `ValueError` for a refused
    endpoint, `TimeoutError` when nobody came back in `LOGIN_WAIT` seconds,
    and the SDK's errors for a failed exchange.
    """
    from mcp import ClientSession
    from mcp.client.auth import AuthorizationCodeResult
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    storage = TokenFile(token_path(home, config.name))
    known = await storage.get_client_info()
    registered = [str(u) for u in known.redirect_uris or []] if known is not None else []
    if known is not None and config.client_id is None and redirect_uri not in registered:
        # Registered (dynamically) for another loopback port: register again
        # for this one rather than be refused.
        storage.forget_client()
    await _preregistered(config, storage, redirect_uri)
    wanted = storage.wanted_scope()
    if wanted is not None:
        # The daemon was refused for want of scope: authorize again, for it.
        storage.forget_tokens()
    arrived, incoming = anyio.create_memory_object_stream[dict[str, str]](4)

    async def redirect(url: str) -> None:
        check_endpoint(url)
        await show(url)

    async def callback() -> AuthorizationCodeResult:
        with anyio.fail_after(LOGIN_WAIT):
            got = await incoming.receive()
        if "error" in got:
            raise ValueError(f"the authorization server said: {got['error']}")
        return AuthorizationCodeResult(
            code=got.get("code", ""), state=got.get("state"), iss=got.get("iss")
        )

    provider = _LoginProvider(
        server_url=str(config.url),
        client_metadata=_metadata(config, redirect_uri),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback,
        client_metadata_url=config.client_metadata_url,
    )
    provider.wanted = wanted
    async with anyio.create_task_group() as tg:
        tg.start_soon(_callback_server, listener, arrived)
        try:
            async with (
                create_mcp_http_client(
                    headers=_configured_headers(config), auth=provider
                ) as client,
                streamable_http_client(str(config.url), http_client=client) as streams,
                ClientSession(streams[0], streams[1]) as session,
            ):
                capabilities = await _greet(session, config.era)
                if "tools" in capabilities and await storage.get_tokens() is None:
                    # The server let the greeting through unauthenticated:
                    # a listing is what needs (and so obtains) the tokens.
                    await session.list_tools()
        finally:
            tg.cancel_scope.cancel()
    if await storage.get_tokens() is None:
        raise ValueError(f"no tokens came back from {config.url}")
    storage.step_up_done()


class _LoginProvider(OAuthClientProvider):
    """The SDK's provider, asking also for the scope a step-up recorded (`TokenFile.want_scope`)."""

    wanted: str | None = None

    async def _perform_authorization(self) -> Any:
        from mcp.client.auth.utils import union_scopes

        if self.wanted:
            metadata = self.context.client_metadata
            metadata.scope = union_scopes(metadata.scope, self.wanted)
        return await super()._perform_authorization()


async def _greet(session: Any, era: str) -> dict[str, Any]:
    """Open `session` in the server's era (`ServerConfig.era`, as the daemon does).

    Returns the server's capabilities.
    """
    from mcp.shared.exceptions import MCPError

    from bicameral.protocol import METHOD_NOT_FOUND, UNSUPPORTED_PROTOCOL_VERSION

    if era != "stateless":
        try:
            result = await session.initialize()
        except MCPError as exc:
            if era == "handshake" or exc.code not in (
                UNSUPPORTED_PROTOCOL_VERSION,
                METHOD_NOT_FOUND,
            ):
                raise
        else:
            return dict(result.capabilities.model_dump(exclude_none=True))
    found = await session.discover()
    return dict(found.capabilities.model_dump(exclude_none=True))


def _configured_headers(config: ServerConfig) -> dict[str, str]:
    """The server's configured headers, which go with the login's requests too (SPEC §8.6)."""
    from bicameral.mcp._config import expand_env

    try:
        return {k: expand_env(v, os.environ) for k, v in config.headers}
    except KeyError as exc:
        raise ValueError(f"cannot send the headers of {config.name!r}: {exc.args[0]}") from None


async def show_url(name: str, url: str, *, browser: bool = True) -> None:
    """Print the authorization URL (alone on its line), and open it in a browser where there is one.

    No browser when `browser` is false (``mcp login --no-browser``) or
    ``BICAMERAL_NO_BROWSER`` is set.
    """
    sys.stderr.write(f"bicameral: to log in to {name!r}, open this URL:\n{url}\n")
    sys.stderr.flush()
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if browser and (CURRENT.macos or graphical) and not os.environ.get("BICAMERAL_NO_BROWSER"):
        import webbrowser

        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(webbrowser.open, url)
