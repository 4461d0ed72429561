"""Method registry and the JSON-RPC 2.0 request rules.

The `Dispatcher` maps method names to handlers and turns one request object
into one response object. Everything about connections (concurrency, limits,
batches on the wire, upgrades) lives in `_connection`; this module is plain
functions over parsed JSON, so the rules are easy to read and to test.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from bicameral.protocol._errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RPCError,
)

if TYPE_CHECKING:
    from bicameral.protocol._connection import Connection

__all__ = ["Dispatcher", "Handler"]

logger = logging.getLogger("bicameral.protocol")

#: ``async def handler(params, conn) -> result``; ``params`` is the request's
#: ``params`` member (a dict, a list, or None when absent).
Handler: TypeAlias = Callable[[Any, "Connection"], Awaitable[Any]]

#: A request that passed validation: (id, method, params, is_notification).
Request: TypeAlias = tuple[Any, str, Any, bool]

_MISSING = object()


class Dispatcher:
    """A table of JSON-RPC methods.

    A handler answers by returning a JSON-serialisable result, or by raising
    `RPCError` to answer with that error. Any other exception is a bug in the
    handler: it is logged with its traceback on the ``bicameral.protocol``
    logger and the client gets -32603 ``internal error``, with nothing of the
    exception on the wire. Cancellation is never converted: it propagates.
    """

    __slots__ = ("_methods",)

    def __init__(self) -> None:
        self._methods: dict[str, Handler] = {}

    def add(self, name: str, handler: Handler) -> None:
        """Register ``handler`` for ``name``, replacing any earlier one."""
        self._methods[name] = handler

    def method(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of `add`: ``@dispatcher.method("system.version")``."""

        def register(handler: Handler) -> Handler:
            self.add(name, handler)
            return handler

        return register

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def names(self) -> list[str]:
        return sorted(self._methods)

    async def execute(self, request: Request, conn: Connection) -> dict[str, Any] | None:
        """Run one validated request; return its response object, None for a notification."""
        msg_id, method, params, notification = request
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")
            result = await handler(params, conn)
        except RPCError as exc:
            if notification:
                return None
            return {"jsonrpc": "2.0", "id": msg_id, "error": exc.to_dict()}
        except Exception:
            logger.exception("internal error in JSON-RPC method %r", method)
            if notification:
                return None
            return internal_error(msg_id)
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_response(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def internal_error(msg_id: Any) -> dict[str, Any]:
    return error_response(msg_id, INTERNAL_ERROR, "internal error")


def _valid_id(value: Any) -> bool:
    # JSON-RPC 2.0: a String, Number or Null. bool is an int in Python.
    return value is None or (type(value) in (str, int, float))


def parse_request(obj: Any) -> Request | dict[str, Any]:
    """Validate one request object: the request, or the -32600 response to send instead.

    An invalid object gets a response even when it has no ``id``: it is not a
    valid notification either, and JSON-RPC answers invalid requests with an
    error whose id is the request's id when that can be read, else null.
    """
    if type(obj) is not dict:
        return error_response(None, INVALID_REQUEST, "invalid request: not an object")
    msg_id = obj.get("id", _MISSING)
    notification = msg_id is _MISSING
    if notification:
        msg_id = None
    elif not _valid_id(msg_id):
        return error_response(None, INVALID_REQUEST, "invalid request: bad id")
    if obj.get("jsonrpc") != "2.0":
        return error_response(msg_id, INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"')
    method = obj.get("method")
    if type(method) is not str:
        return error_response(msg_id, INVALID_REQUEST, "invalid request: method must be a string")
    params = obj.get("params")
    if params is not None and type(params) not in (dict, list):
        return error_response(
            msg_id, INVALID_REQUEST, "invalid request: params must be an object or an array"
        )
    if "params" in obj and params is None:
        return error_response(
            msg_id, INVALID_REQUEST, "invalid request: params must be an object or an array"
        )
    return (msg_id, method, params, notification)
