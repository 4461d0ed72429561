"""Newline-delimited JSON-RPC 2.0: framing, dispatcher, Unix/TCP server, clients, peer.

Names are loaded on first use, so ``from bicameral.protocol import
BlockingClient`` imports only the standard library: the CLI's fast paths
must not pay for Trio, anyio or orjson.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.protocol._blocking import BlockingClient
    from bicameral.protocol._burst import BurstLog
    from bicameral.protocol._client import AsyncClient
    from bicameral.protocol._codes import (
        CONNECTION_CLOSED,
        HEADER_MISMATCH,
        INTERNAL_ERROR,
        INVALID_PARAMS,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        PARSE_ERROR,
        REQUEST_TIMEOUT,
        RESOURCE_NOT_FOUND,
        SERVER_ERROR,
        UNAUTHORIZED,
        UNSUPPORTED_PROTOCOL_VERSION,
        URL_ELICITATION_REQUIRED,
    )
    from bicameral.protocol._connection import Connection, UpgradeHandler
    from bicameral.protocol._dispatcher import Dispatcher, Handler
    from bicameral.protocol._errors import PeerClosed, RPCError
    from bicameral.protocol._fdio import FdReader, FdWriter
    from bicameral.protocol._framing import FrameDecoder, FrameTooLarge
    from bicameral.protocol._limits import InputBudget, Limits
    from bicameral.protocol._outbound import ProgressFn
    from bicameral.protocol._peer import EOF, OVER_BUDGET, TOO_LARGE, Peer, PeerHandler
    from bicameral.protocol._server import serve_tcp, serve_unix
    from bicameral.protocol._wire import Wire

__all__ = [
    "CONNECTION_CLOSED",
    "EOF",
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "MISSING_REQUIRED_CLIENT_CAPABILITY",
    "OVER_BUDGET",
    "PARSE_ERROR",
    "REQUEST_TIMEOUT",
    "RESOURCE_NOT_FOUND",
    "SERVER_ERROR",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "URL_ELICITATION_REQUIRED",
    "AsyncClient",
    "BlockingClient",
    "BurstLog",
    "Connection",
    "Dispatcher",
    "FdReader",
    "FdWriter",
    "FrameDecoder",
    "FrameTooLarge",
    "Handler",
    "InputBudget",
    "Limits",
    "Peer",
    "PeerClosed",
    "PeerHandler",
    "ProgressFn",
    "RPCError",
    "UpgradeHandler",
    "Wire",
    "serve_tcp",
    "serve_unix",
]

_MODULES = {
    "BlockingClient": "_blocking",
    "BurstLog": "_burst",
    "AsyncClient": "_client",
    "CONNECTION_CLOSED": "_codes",
    "HEADER_MISMATCH": "_codes",
    "INTERNAL_ERROR": "_codes",
    "INVALID_PARAMS": "_codes",
    "INVALID_REQUEST": "_codes",
    "METHOD_NOT_FOUND": "_codes",
    "MISSING_REQUIRED_CLIENT_CAPABILITY": "_codes",
    "PARSE_ERROR": "_codes",
    "REQUEST_TIMEOUT": "_codes",
    "RESOURCE_NOT_FOUND": "_codes",
    "SERVER_ERROR": "_codes",
    "UNAUTHORIZED": "_codes",
    "UNSUPPORTED_PROTOCOL_VERSION": "_codes",
    "URL_ELICITATION_REQUIRED": "_codes",
    "Connection": "_connection",
    "UpgradeHandler": "_connection",
    "Dispatcher": "_dispatcher",
    "Handler": "_dispatcher",
    "PeerClosed": "_errors",
    "RPCError": "_errors",
    "FdReader": "_fdio",
    "FdWriter": "_fdio",
    "FrameDecoder": "_framing",
    "FrameTooLarge": "_framing",
    "InputBudget": "_limits",
    "Limits": "_limits",
    "ProgressFn": "_outbound",
    "EOF": "_peer",
    "OVER_BUDGET": "_peer",
    "Peer": "_peer",
    "PeerHandler": "_peer",
    "TOO_LARGE": "_peer",
    "serve_tcp": "_server",
    "serve_unix": "_server",
    "Wire": "_wire",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
