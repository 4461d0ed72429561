"""Newline-delimited JSON-RPC 2.0: framing, dispatcher, Unix/TCP server, clients, peer.

Names are loaded on first use, so ``from bicameral.protocol import
BlockingClient`` imports only the standard library: the CLI's fast paths
must not pay for Trio, anyio or orjson.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bicameral._lazy import lazy_exports

if TYPE_CHECKING:
    from bicameral.protocol._admission import BACKLOG, Admission, Ticket
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

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
