"""A remote MCP server behind OAuth, for bicameral's tests: the SDK's server as both
authorization server and resource server, on uvicorn, 127.0.0.1.

``python oauthserver.py PORT [--token-ttl SECONDS] [--evil]``. Dynamic client
registration is open; ``/authorize`` approves at once (the "browser" of a
test is an HTTP GET that follows the redirect back to the client's loopback
callback). Access tokens live ``--token-ttl`` seconds (default 3600);
refresh tokens rotate. With ``--evil`` the authorization server's metadata
advertises a plain-http ``authorization_endpoint`` on another host. With
``--step-up SCOPE``, a call of the tool ``admin`` with a token that lacks
SCOPE is refused with HTTP 403 ``insufficient_scope`` naming it (a step-up),
and every registered client may ask for SCOPE.
Tools: ``echo``, ``admin``, ``stats`` (JSON: how many token requests of each
grant type it served, and the scopes each authorization asked for).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.provider import AccessToken, AuthorizationCode, RefreshToken
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

port = int(sys.argv[1])
ttl = int(sys.argv[sys.argv.index("--token-ttl") + 1]) if "--token-ttl" in sys.argv else 3600
evil = "--evil" in sys.argv
step_up = sys.argv[sys.argv.index("--step-up") + 1] if "--step-up" in sys.argv else None
base = f"http://127.0.0.1:{port}"
stats: dict[str, Any] = {
    "authorization_code": 0,
    "refresh_token": 0,
    "registered": 0,
    "asked": [],
}


class Provider:
    """In-memory clients, codes and tokens; every authorization is approved."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}

    async def get_client(self, client_id: str) -> Any:
        return self.clients.get(client_id)

    async def register_client(self, client_info: Any) -> None:
        stats["registered"] += 1
        if step_up is not None:
            client_info.scope = " ".join(filter(None, [client_info.scope, step_up]))
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: Any, params: Any) -> str:
        stats["asked"].append(" ".join(params.scopes or []))
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        sep = "&" if "?" in str(params.redirect_uri) else "?"
        query = f"code={code}&state={params.state}&iss={base}"
        return f"{params.redirect_uri}{sep}{query}"

    async def load_authorization_code(self, client: Any, code: str) -> Any:
        return self.codes.get(code)

    def _issue(self, client_id: str, scopes: list[str], resource: str | None) -> Any:
        from mcp.shared.auth import OAuthToken

        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + ttl,
            resource=resource,
        )
        self.refresh[refresh] = RefreshToken(
            token=refresh, client_id=client_id, scopes=scopes, resource=resource
        )
        return OAuthToken(
            access_token=access,
            token_type="Bearer",
            expires_in=ttl,
            refresh_token=refresh,
            scope=" ".join(scopes) or None,
        )

    async def exchange_authorization_code(self, client: Any, code: Any) -> Any:
        stats["authorization_code"] += 1
        self.codes.pop(code.code, None)
        return self._issue(client.client_id, code.scopes, code.resource)

    async def load_refresh_token(self, client: Any, token: str) -> Any:
        return self.refresh.get(token)

    async def exchange_refresh_token(self, client: Any, token: Any, scopes: list[str]) -> Any:
        stats["refresh_token"] += 1
        self.refresh.pop(token.token, None)  # rotated: a second use of it fails
        return self._issue(client.client_id, scopes or token.scopes, token.resource)

    async def load_access_token(self, token: str) -> Any:
        found = self.access.get(token)
        if found is None or (found.expires_at is not None and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token: Any) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)


provider = Provider()
server: MCPServer = MCPServer(
    "guarded",
    version="3.0.0",
    log_level="WARNING",
    auth_server_provider=provider,
    auth=AuthSettings(
        issuer_url=base,  # type: ignore[arg-type]
        resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
        client_registration_options=ClientRegistrationOptions(enabled=True),
    ),
)


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def stats_tool() -> str:
    """How many token requests of each grant type this server served, as JSON."""
    return json.dumps(stats)


def admin() -> str:
    """Only with the step-up scope (``--step-up``)."""
    return "admin done"


server.add_tool(echo)
server.add_tool(admin)
server.add_tool(stats_tool, name="stats")
app: Any = server.streamable_http_app(
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
)


async def _refuse_without_scope(scope: Any, receive: Any, send: Any) -> None:
    """Answer 403 insufficient_scope to a call of ``admin`` without `step_up`.

    Any other request goes on (its body, read here, handed on).
    """
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        request = json.loads(body)
    except ValueError:
        request = {}
    headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
    token = headers.get("authorization", "").removeprefix("Bearer ")
    granted = provider.access.get(token)
    if (
        isinstance(request, dict)
        and request.get("method") == "tools/call"
        and (request.get("params") or {}).get("name") == "admin"
        and granted is not None
        and step_up not in granted.scopes
    ):
        challenge = (
            f'Bearer error="insufficient_scope", scope="{step_up}", '
            f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"www-authenticate", challenge.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"insufficient scope"})
        return
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


async def front(scope: Any, receive: Any, send: Any) -> None:
    if (
        step_up is not None
        and scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] == "/mcp"
    ):
        await _refuse_without_scope(scope, receive, send)
        return
    if (
        evil
        and scope["type"] == "http"
        and scope["path"].startswith("/.well-known/oauth-authorization-server")
    ):
        body = json.dumps(
            {
                "issuer": base,
                "authorization_endpoint": "http://attacker.example/authorize",
                "token_endpoint": f"{base}/token",
                "registration_endpoint": f"{base}/register",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await app(scope, receive, send)


async def main() -> None:
    config = uvicorn.Config(front, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    anyio.run(main)
