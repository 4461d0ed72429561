"""Small shared pieces of the MCP layer that must not import the SDK."""

from __future__ import annotations

from bicameral.protocol import Limits, RPCError

__all__ = [
    "CALL_WAIT",
    "CLIENT_CAPABILITIES_KEY",
    "CLIENT_INFO_KEY",
    "ENVELOPE_KEYS",
    "INIT_WAIT",
    "LIST_METHODS",
    "LOG_LEVEL_KEY",
    "MAX_FRAME",
    "PROTOCOL_VERSION_KEY",
    "SERVER_INFO_KEY",
    "SESSION_IDLE",
    "UpstreamError",
]

#: How long a call waits for a server that is (re)starting, in seconds
#: (``[mcp] ready_timeout`` by default).
CALL_WAIT = 10.0
#: Default ``[mcp] session_idle``: seconds an HTTP session with no request and no
#: open stream is kept before it ends (its instances go back to the pool).
SESSION_IDLE = 60.0
#: The longest line a peer may send unless the daemon says otherwise (its ``max_frame``).
MAX_FRAME = Limits().max_frame
#: How long a client's ``initialize`` waits for a server's very first start
#: (its answer comes from the server's own initialize result).
INIT_WAIT = 30.0

#: Each cached list: its kind -> (the list method, the result's list key).
LIST_METHODS = {
    "tools": ("tools/list", "tools"),
    "resources": ("resources/list", "resources"),
    "resource_templates": ("resources/templates/list", "resourceTemplates"),
    "prompts": ("prompts/list", "prompts"),
}

#: The 2026-07-28 envelope: the keys of a request's ``_meta`` that say who
#: asks (both sides use them: clients send them, bicameral sends them to a
#: server of that era), and of a result's ``_meta`` that say who answered.
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
ENVELOPE_KEYS = (PROTOCOL_VERSION_KEY, CLIENT_INFO_KEY, CLIENT_CAPABILITIES_KEY, LOG_LEVEL_KEY)


class UpstreamError(RPCError):
    """A call could not be answered by the upstream; `code` and message go to the client."""
