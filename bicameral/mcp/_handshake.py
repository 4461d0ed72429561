"""bicameral's side of an MCP server's handshake, as plain dicts over `LeanDispatcher`.

The daemon speaks to its servers without the official SDK's `ClientSession`
(importing it, with its pydantic models, was most of a daemon's start-up
CPU and memory: docs/mcp.md, "Start-up and memory"). What the SDK's session
did for a connection is done here, with the same checks:

* ``initialize`` proposing `LATEST_HANDSHAKE_VERSION`, with the client
  capabilities the instance's clients have and bicameral's ``clientInfo``;
  an answer in a version outside `HANDSHAKE_VERSIONS` is refused (the
  instance ends with the reason); then ``notifications/initialized``.
* A server that refuses ``initialize`` (``-32022`` or ``-32601``) speaks
  only the 2026-07-28 era: ``server/discover`` is sent, proposing
  `LATEST_MODERN_VERSION` in the ``_meta`` envelope; on ``-32022`` the
  server's ``supported`` list is intersected with `MODERN_VERSIONS` and the
  probe is sent once more at the newest mutual version. The version adopted
  is the newest of the result's ``supportedVersions`` bicameral speaks;
  from then on every request carries the envelope
  (`LeanDispatcher.envelope`).
* ``ping``, for liveness.

The version lists are the SDK's (``mcp.client.session``);
tests/mcp/test_lean.py checks that they still are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bicameral.mcp._common import (
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    PROTOCOL_VERSION_KEY,
    SERVER_INFO_KEY,
)
from bicameral.mcp._dispatcher import LeanDispatcher
from bicameral.protocol import METHOD_NOT_FOUND, UNSUPPORTED_PROTOCOL_VERSION, PeerClosed, RPCError

__all__ = [
    "HANDSHAKE_VERSIONS",
    "LATEST_HANDSHAKE_VERSION",
    "LATEST_MODERN_VERSION",
    "MODERN_VERSIONS",
    "HandshakeRefused",
    "client_capabilities",
    "client_info",
    "open_session",
    "ping",
]

#: The versions ``initialize`` may settle on, oldest first.
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION = HANDSHAKE_VERSIONS[-1]
#: The versions ``server/discover`` may settle on, oldest first.
MODERN_VERSIONS = ("2026-07-28",)
LATEST_MODERN_VERSION = MODERN_VERSIONS[-1]


class HandshakeRefused(Exception):
    """The server's answer to the handshake cannot be used; the message says why."""


def client_info() -> dict[str, Any]:
    """bicameral's ``clientInfo``."""
    try:
        from bicameral import __version__

        version = str(__version__)
    except ImportError:  # pragma: no cover
        version = "0"
    return {"name": "bicameral", "version": version}


def client_capabilities(caps: Iterable[str]) -> dict[str, Any]:
    """The client capabilities declared for clients that have `caps`, as the SDK spelt them."""
    have = set(caps)
    declared: dict[str, Any] = {}
    if "sampling" in have:
        declared["sampling"] = {}
    if "elicitation" in have:
        declared["elicitation"] = {"form": {}, "url": {}}
    if "roots" in have:
        declared["roots"] = {"listChanged": True}
    return declared


async def open_session(
    dispatcher: LeanDispatcher, capabilities: dict[str, Any], era: str = "auto"
) -> dict[str, Any]:
    """The server's identity, as an ``initialize`` result, in the era it speaks.

    With ``era = "auto"``, the handshake first (every server of the handshake
    era, and the SDK's dual-era servers, answer it); a server that refuses it
    for its protocol version speaks only the 2026-07-28 era: it is discovered
    instead. ``era = "stateless"`` discovers at once (no ``initialize`` is
    ever sent), ``"handshake"`` never discovers.

    Raises:
      HandshakeRefused: the server answered in a version bicameral does not
        speak, or with something that is not a handshake result.
      RPCError: the server answered with an error (`PeerClosed`: it closed).
    """
    info = client_info()
    params = {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": capabilities,
        "clientInfo": info,
    }
    if era != "stateless":
        try:
            result = await dispatcher.call("initialize", params, cancel_on_abandon=False)
        except RPCError as exc:
            if (
                era == "handshake"
                or isinstance(exc, PeerClosed)
                or exc.code not in (UNSUPPORTED_PROTOCOL_VERSION, METHOD_NOT_FOUND)
            ):
                raise
        else:
            init = _adopt_initialize(result)
            await dispatcher.notify("notifications/initialized", None)
            return init
    return await _discover(dispatcher, capabilities, info)


def _adopt_initialize(result: dict[str, Any]) -> dict[str, Any]:
    version = result.get("protocolVersion")
    if version not in HANDSHAKE_VERSIONS:
        raise HandshakeRefused(
            f"the server answered protocol version {version!r}, which bicameral does not"
            f" speak (it speaks {', '.join(HANDSHAKE_VERSIONS + MODERN_VERSIONS)})"
        )
    if not isinstance(result.get("serverInfo"), dict):
        raise HandshakeRefused("the server's initialize result has no serverInfo")
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict):
        raise HandshakeRefused("the server's initialize result has no capabilities")
    return result


async def _discover(
    dispatcher: LeanDispatcher, capabilities: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    try:
        found = await _probe(dispatcher, LATEST_MODERN_VERSION, capabilities, info)
    except RPCError as exc:
        if isinstance(exc, PeerClosed) or exc.code != UNSUPPORTED_PROTOCOL_VERSION:
            raise
        data = exc.data if isinstance(exc.data, dict) else {}
        supported = data.get("supported")
        mutual = [v for v in MODERN_VERSIONS if isinstance(supported, list) and v in supported]
        if not mutual:
            raise
        found = await _probe(dispatcher, mutual[-1], capabilities, info)
    offered = found.get("supportedVersions")
    mutual = [v for v in MODERN_VERSIONS if isinstance(offered, list) and v in offered]
    if not mutual:
        raise HandshakeRefused(
            f"no protocol version in common (the server: {offered!r},"
            f" bicameral: {', '.join(HANDSHAKE_VERSIONS + MODERN_VERSIONS)})"
        )
    version = mutual[-1]
    dispatcher.envelope = {
        PROTOCOL_VERSION_KEY: version,
        CLIENT_INFO_KEY: info,
        CLIENT_CAPABILITIES_KEY: capabilities,
    }
    meta = found.get("_meta")
    server_info = meta.get(SERVER_INFO_KEY) if isinstance(meta, dict) else None
    init: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": found.get("capabilities") or {},
        "serverInfo": server_info if isinstance(server_info, dict) else {"name": "?"},
    }
    if found.get("instructions"):
        init["instructions"] = found["instructions"]
    return init


async def _probe(
    dispatcher: LeanDispatcher, version: str, capabilities: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    """One ``server/discover`` at `version` (not timed here: the caller bounds the start)."""
    meta = {
        PROTOCOL_VERSION_KEY: version,
        CLIENT_INFO_KEY: info,
        CLIENT_CAPABILITIES_KEY: capabilities,
    }
    return await dispatcher.call("server/discover", {"_meta": meta}, cancel_on_abandon=False)


async def ping(dispatcher: LeanDispatcher) -> None:
    """One ``ping``; raises `RPCError` as `LeanDispatcher.call` does."""
    await dispatcher.call("ping", {})
