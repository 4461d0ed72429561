"""The stateless front's own rules (MCP 2026-07-28): what bicameral checks before any server hears.

bicameral answers a stateless-era request itself where no upstream is
involved, as the era's servers must:

* The envelope and the routing headers (`rejection`): a request whose
  ``_meta`` lacks the protocol version or the client capabilities gets
  -32602; ``MCP-Protocol-Version``, ``Mcp-Method`` or ``Mcp-Name`` headers
  that contradict the body (or a routing header sent twice) get -32020; a
  version bicameral does not serve gets -32022 with ``supported`` (the
  versions ``server/discover`` lists) and ``requested``. The ladder is the
  official SDK's (`mcp.shared.inbound`), the one its servers run.
* ``Mcp-Param-*`` headers of a ``tools/call`` against the tool's
  ``x-mcp-header`` annotations (`check_param_headers`), as the client sees
  the tool.
* Removed methods (`REMOVED_METHODS`): -32601.
* ``subscriptions/listen`` (`Listen`): acknowledged first, every message
  tagged with the subscription id (the listen request's id), only what the
  filter asked for, resource subscriptions held on the servers for as long
  as the stream lasts (and restored after a server restarts, like any
  subscription, `bicameral.mcp._state`).

Over HTTP each JSON-RPC error code has its status (`http_status`): 400 for
-32700, -32600, -32602, -32020, -32021, -32022; 404 for -32601.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from bicameral.protocol import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    UNSUPPORTED_PROTOCOL_VERSION,
    Peer,
    RPCError,
)

__all__ = [
    "MAX_LISTEN_PENDING",
    "REMOVED_METHODS",
    "SUBSCRIPTION_ID_KEY",
    "Listen",
    "annotated_tools",
    "check_param_headers",
    "http_status",
    "load_sdk",
    "rejection",
]

#: Requests the stateless era removed: an enveloped one is answered -32601.
REMOVED_METHODS = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
#: The ``_meta`` key tagging every message of a ``subscriptions/listen`` stream.
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
#: Each list notice -> the ``subscriptions/listen`` filter key that opts in to it.
LISTEN_FILTER = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}
#: Notices a listen stream holds while its acknowledgement is being sent (level
#: triggers: the same notice twice is held once).
MAX_LISTEN_PENDING = 64


#: The SDK's ``mcp.shared.inbound``, once `load_sdk` has imported it.
_SDK: dict[str, Any] = {}


async def load_sdk() -> None:
    """Import the SDK's ladder (`mcp.shared.inbound`) once, off the event loop.

    The SDK is imported in a worker thread, as the adapters import it
    (`bicameral.mcp._adapter`): the same module first, so the two imports
    wait for each other instead of meeting half-way.
    """
    if "inbound" not in _SDK:

        def load() -> Any:
            importlib.import_module("bicameral.mcp._upstream")
            return importlib.import_module("mcp.shared.inbound")

        _SDK["inbound"] = await anyio.to_thread.run_sync(load)


def _sdk() -> Any:
    return _SDK["inbound"]


def rejection(
    message: Mapping[str, Any], raw_headers: Sequence[tuple[bytes, bytes]], versions: Sequence[str]
) -> tuple[RPCError | None, dict[str, str] | None]:
    """(the error a stateless-era HTTP request gets before it is served, its ``Mcp-Param-*``).

    The error is None when the request passes; the ``Mcp-Param-*`` headers
    (names lowercased) None when it sent none. `raw_headers` as the ASGI
    scope has them (a repeated header is visible only there); `versions`:
    the stateless-era versions bicameral serves. Only the ``mcp-*`` headers
    are looked at: this runs on every stateless-era request.
    """
    inbound = _sdk()
    if "id" not in message:  # a notification: nothing to serve, but a version to check
        version = next((v for k, v in raw_headers if k.lower() == b"mcp-protocol-version"), b"")
        requested = version.decode("latin-1").strip()
        if requested in versions:
            return None, None
        supported = {"supported": [*versions], "requested": requested}
        why = f"unsupported protocol version {requested!r}"
        return RPCError(UNSUPPORTED_PROTOCOL_VERSION, why, supported), None
    # Header values without the optional whitespace around them (RFC 9110 §5.5).
    pairs = [
        (k.decode("latin-1").lower(), v.decode("latin-1").strip())
        for k, v in raw_headers
        if k[:4].lower() == b"mcp-"
    ]
    duplicated = inbound.find_duplicated_routing_header(pairs)
    if duplicated is not None:
        return RPCError(HEADER_MISMATCH, f"the {duplicated} header appears more than once"), None
    params = None
    for name, value in pairs:
        if name.startswith("mcp-param-"):
            params = params or {}
            if name in params:
                return RPCError(HEADER_MISMATCH, f"the {name} header appears more than once"), None
            params[name] = value
    verdict = inbound.classify_inbound_request(
        message, headers=dict(pairs), supported_modern_versions=list(versions)
    )
    if isinstance(verdict, inbound.InboundLadderRejection):
        return RPCError(verdict.code, verdict.message, verdict.data), None
    return None, params


def http_status(code: int) -> int:
    """The HTTP status of a stateless-era answer that is the JSON-RPC error `code`."""
    status: int = _sdk().ERROR_CODE_HTTP_STATUS.get(code, 200)
    return status


#: Tool lists (by identity, the list held) -> their tools that name an ``x-mcp-header``.
_ANNOTATED: dict[int, tuple[object, dict[str, dict[str, Any]]]] = {}


def annotated_tools(pages: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The tools of a view's pages whose schema carries ``x-mcp-header``, by name (cached)."""
    hit = _ANNOTATED.get(id(pages))
    if hit is not None and hit[0] is pages:
        return hit[1]
    found = {
        tool["name"]: tool
        for page in pages
        for tool in page
        if isinstance(tool, dict) and "x-mcp-header" in repr(tool.get("inputSchema"))
    }
    if len(_ANNOTATED) >= 256:
        _ANNOTATED.clear()
    _ANNOTATED[id(pages)] = (pages, found)
    return found


def check_param_headers(
    tool: Mapping[str, Any] | None, arguments: Any, headers: Mapping[str, str] | None
) -> None:
    """Raise -32020 when a ``tools/call``'s ``Mcp-Param-*`` headers contradict its arguments.

    `tool` is the tool as the client sees it, when its ``inputSchema`` says
    that arguments travel as headers (``x-mcp-header``, `annotated_tools`);
    `headers` the request's ``Mcp-Param-*`` headers (None: it sent none).
    Headers a tool does not declare are not the front's business.
    """
    schema = tool.get("inputSchema") if tool is not None else None
    if not isinstance(schema, dict):
        return
    found = _sdk().validate_mcp_param_headers(
        schema, arguments if isinstance(arguments, dict) else {}, headers or {}
    )
    if found is not None:
        raise RPCError(found.code, found.message, found.data)


class Listen:
    """One ``subscriptions/listen`` stream of a client: its filter, its tag, its notices.

    Notices go out (`deliver`) only after the acknowledgement (`acknowledge`),
    which is the stream's first message; those that come meanwhile are held.
    """

    def __init__(self, request_id: Any, wanted: Mapping[str, Any]) -> None:
        self.tag = {SUBSCRIPTION_ID_KEY: request_id}
        #: What the client asked for and bicameral honours (the acknowledgement says it).
        self.honored: dict[str, Any] = {
            key: True for key in LISTEN_FILTER.values() if wanted.get(key) is True
        }
        self.uris: set[str] = set()
        self.acknowledged = False
        self._held: list[tuple[str, dict[str, Any]]] = []
        self.ended = anyio.Event()

    @staticmethod
    def parse(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(the filter, the resource URIs it subscribes to); -32602 when it is malformed."""
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            raise RPCError(
                INVALID_PARAMS, "subscriptions/listen needs notifications: the filter to deliver"
            )
        uris = wanted.get("resourceSubscriptions") or []
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise RPCError(INVALID_PARAMS, "resourceSubscriptions must be a list of resource URIs")
        return wanted, list(dict.fromkeys(uris))

    def wants(self, method: str, params: Mapping[str, Any]) -> bool:
        if method == "notifications/resources/updated":
            return params.get("uri") in self.uris
        key = LISTEN_FILTER.get(method)
        return key is not None and key in self.honored

    async def acknowledge(self, peer: Peer) -> None:
        honored = dict(self.honored)
        if self.uris:
            honored["resourceSubscriptions"] = sorted(self.uris)
        params = {"notifications": honored, "_meta": self.tag}
        await peer.notify("notifications/subscriptions/acknowledged", params)
        self.acknowledged = True
        for method, held in self._held:
            peer.notify_soon(method, held)
        self._held.clear()

    def deliver(self, peer: Peer, method: str, params: Mapping[str, Any] | None) -> None:
        """Send `method` on the stream, tagged, when the filter asked for it."""
        params = params or {}
        if self.ended.is_set() or not self.wants(method, params):
            return
        meta = params.get("_meta")
        tagged = {**params, "_meta": {**(meta if isinstance(meta, dict) else {}), **self.tag}}
        if self.acknowledged:
            peer.notify_soon(method, tagged)
        elif (method, tagged) not in self._held and len(self._held) < MAX_LISTEN_PENDING:
            self._held.append((method, tagged))

    def result(self) -> dict[str, Any]:
        """The answer that ends the stream gracefully (the daemon is stopping)."""
        return {"_meta": self.tag, "resultType": "complete"}
