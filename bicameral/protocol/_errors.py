"""`RPCError`, the exception a method handler raises to answer with an error; `PeerClosed`.

This module imports only the standard library: the blocking client (and so
the CLI's fast paths) needs it without pulling in Trio or anyio.
"""

from __future__ import annotations

from typing import Any

from bicameral.protocol._codes import CONNECTION_CLOSED, INTERNAL_ERROR

__all__ = ["PeerClosed", "RPCError"]


class RPCError(Exception):
    """A JSON-RPC error: raised by a handler to answer with it, and by clients on receiving one.

    ``data`` must be JSON-serialisable; it travels in the error object's
    ``data`` member and is left out when ``None``.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The error object of a JSON-RPC response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_dict(cls, error: Any) -> RPCError:
        """Rebuild the exception from a response's error object, tolerating a malformed one."""
        if not isinstance(error, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {error!r}")
        code = error.get("code")
        message = error.get("message")
        return cls(
            code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
            message if isinstance(message, str) else repr(message),
            error.get("data"),
        )


class PeerClosed(RPCError):
    """The stream closed before the request was answered (`CONNECTION_CLOSED`)."""

    def __init__(self, message: str = "Connection closed") -> None:
        super().__init__(CONNECTION_CLOSED, message)
