"""Every JSON-RPC error code bicameral speaks, declared once.

The standard codes of JSON-RPC 2.0, the implementation-defined server
errors (-32000 to -32099) that bicameral and MCP give a meaning, and
MCP's own codes. Every other module uses these names; docs/mcp.md lists
them for users. Standard library only: the CLI's fast paths import it.
"""

from __future__ import annotations

__all__ = [
    "CONNECTION_CLOSED",
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "MISSING_REQUIRED_CLIENT_CAPABILITY",
    "PARSE_ERROR",
    "REQUEST_TIMEOUT",
    "RESOURCE_NOT_FOUND",
    "SERVER_ERROR",
    "UNAUTHORIZED",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "URL_ELICITATION_REQUIRED",
]

# -- JSON-RPC 2.0 ------------------------------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# -- implementation-defined server errors (-32000 to -32099) --------------------------

#: A request the server refused for a reason of its own (``system.reload``
#: rejected...). MCP's SDKs give a request whose stream closed before it was
#: answered the same code, and so does bicameral (`CONNECTION_CLOSED`).
SERVER_ERROR = -32000
#: A request whose stream closed before it was answered (`PeerClosed`).
CONNECTION_CLOSED = SERVER_ERROR
#: A TCP connection that has not yet presented the daemon's token with
#: ``system.attach`` (SPEC §7).
UNAUTHORIZED = -32001
#: A request not answered within its timeout. bicameral's own code: the MCP
#: SDKs use -32001 for it, which bicameral's protocol gives `UNAUTHORIZED`;
#: -32003 is a server-error code MCP does not use.
REQUEST_TIMEOUT = -32003

# -- MCP ---------------------------------------------------------------------------

#: ``resources/read`` of a URI the server does not have.
RESOURCE_NOT_FOUND = -32002
#: A 2026-07-28 request whose HTTP headers contradict its ``_meta`` envelope.
HEADER_MISMATCH = -32020
#: A 2026-07-28 request needing a client capability the client did not declare.
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
#: A peer answers a protocol version it does not speak with this.
UNSUPPORTED_PROTOCOL_VERSION = -32022
#: A tool call that needs the user to open a URL first (URL-mode elicitation).
URL_ELICITATION_REQUIRED = -32042
