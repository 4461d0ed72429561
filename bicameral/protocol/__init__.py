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
    from bicameral.protocol._connection import Connection, UpgradeHandler
    from bicameral.protocol._dispatcher import Dispatcher, Handler
    from bicameral.protocol._errors import (
        INTERNAL_ERROR,
        INVALID_PARAMS,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        PARSE_ERROR,
        UNAUTHORIZED,
        RPCError,
    )
    from bicameral.protocol._fdio import FdReader, FdWriter
    from bicameral.protocol._framing import FrameDecoder, FrameTooLarge
    from bicameral.protocol._limits import InputBudget, Limits
    from bicameral.protocol._peer import (
        CONNECTION_CLOSED,
        EOF,
        OVER_BUDGET,
        REQUEST_TIMEOUT,
        TOO_LARGE,
        Peer,
        PeerClosed,
        PeerHandler,
        ProgressFn,
        Wire,
    )
    from bicameral.protocol._server import serve_tcp, serve_unix

__all__ = [
    "CONNECTION_CLOSED",
    "EOF",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "OVER_BUDGET",
    "PARSE_ERROR",
    "REQUEST_TIMEOUT",
    "TOO_LARGE",
    "UNAUTHORIZED",
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
    "AsyncClient": "_client",
    "BlockingClient": "_blocking",
    "BurstLog": "_burst",
    "Connection": "_connection",
    "UpgradeHandler": "_connection",
    "Dispatcher": "_dispatcher",
    "Handler": "_dispatcher",
    "INTERNAL_ERROR": "_errors",
    "INVALID_PARAMS": "_errors",
    "INVALID_REQUEST": "_errors",
    "METHOD_NOT_FOUND": "_errors",
    "PARSE_ERROR": "_errors",
    "UNAUTHORIZED": "_errors",
    "RPCError": "_errors",
    "FdReader": "_fdio",
    "FdWriter": "_fdio",
    "FrameDecoder": "_framing",
    "FrameTooLarge": "_framing",
    "InputBudget": "_limits",
    "Limits": "_limits",
    "CONNECTION_CLOSED": "_peer",
    "EOF": "_peer",
    "OVER_BUDGET": "_peer",
    "REQUEST_TIMEOUT": "_peer",
    "TOO_LARGE": "_peer",
    "Peer": "_peer",
    "PeerClosed": "_peer",
    "PeerHandler": "_peer",
    "ProgressFn": "_peer",
    "Wire": "_peer",
    "serve_tcp": "_server",
    "serve_unix": "_server",
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
