"""Method registry and the JSON-RPC 2.0 request rules.

The `Dispatcher` maps method names to handlers and turns one request object
into one response object. Everything about connections (concurrency, limits,
batches on the wire, upgrades) lives in `_requests` and `_served`; this module is plain
functions over parsed JSON, so the rules are easy to read and to test.
"""

from __future__ import annotations

import dis
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from bicameral.protocol._codes import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND
from bicameral.protocol._errors import RPCError
from bicameral.protocol._framing import EncodeError, encode

if TYPE_CHECKING:  # not a circle: only for the types (keeps Trio off this import)
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
    logger and the client gets `INTERNAL_ERROR` ``internal error``, with nothing of the
    exception on the wire. Cancellation is never converted: it propagates.

    A handler whose body contains no ``await`` (nor ``async with`` / ``async
    for``) cannot suspend, so the connection runs it at once instead of in a
    task of its own: the same result, without the cost of a task per
    request, which is most of a round trip for methods that answer from
    memory such as ``system.version``.
    """

    __slots__ = ("_immediate", "_methods")

    def __init__(self) -> None:
        self._methods: dict[str, Handler] = {}
        self._immediate: set[str] = set()

    def add(self, name: str, handler: Handler) -> None:
        """Register ``handler`` for ``name``, replacing any earlier one."""
        self._methods[name] = handler
        if never_suspends(handler):
            self._immediate.add(name)
        else:
            self._immediate.discard(name)

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

    def immediate(self, method: str) -> bool:
        """Whether `execute_now` can answer ``method``: no handler, or one that never suspends."""
        return method in self._immediate or method not in self._methods

    async def execute(self, request: Request, conn: Connection) -> dict[str, Any] | None:
        """Run one validated request; return its response object, None for a notification."""
        msg_id, method, params, notification = request
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")
            result = await handler(params, conn)
        except Exception as exc:
            return None if notification else _failure(msg_id, method, exc)
        return None if notification else {"jsonrpc": "2.0", "id": msg_id, "result": result}

    def execute_now(self, request: Request, conn: Connection) -> dict[str, Any] | None:
        """`execute` for a method that is `immediate`, without an event loop round."""
        msg_id, method, params, notification = request
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")
            coro = handler(params, conn)
            try:
                coro.send(None)  # type: ignore[attr-defined]
            except StopIteration as done:
                result = done.value
            else:  # pragma: no cover - never_suspends() rules this out
                coro.close()  # type: ignore[attr-defined]
                raise RuntimeError(f"the handler of {method!r} suspended")
        except Exception as exc:
            return None if notification else _failure(msg_id, method, exc)
        return None if notification else {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _failure(msg_id: Any, method: str, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, RPCError):
        return {"jsonrpc": "2.0", "id": msg_id, "error": exc.to_dict()}
    logger.error("internal error in JSON-RPC method %r", method, exc_info=exc)
    return internal_error(msg_id)


# The opcodes through which a coroutine can suspend (await, async with,
# async for, and the async comprehensions built on them).
_SUSPENDING_OPS = frozenset(
    {"YIELD_VALUE", "SEND", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH"}
)


def never_suspends(handler: object) -> bool:
    """Whether ``handler`` is a coroutine function whose body cannot suspend.

    Conservative: anything that is not a plain ``async def`` function or
    method (a partial, a callable object, a decorated wrapper that awaits)
    counts as able to suspend and runs in a task.
    """
    func = getattr(handler, "__func__", handler)
    code = getattr(func, "__code__", None)
    if code is None or not code.co_flags & inspect.CO_COROUTINE:
        return False
    return not any(ins.opname in _SUSPENDING_OPS for ins in dis.get_instructions(code))


def error_response(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def internal_error(msg_id: Any) -> dict[str, Any]:
    return error_response(msg_id, INTERNAL_ERROR, "internal error")


def encode_response(response: dict[str, Any]) -> bytes:
    """The line of one response; `INTERNAL_ERROR` if its result is not JSON."""
    try:
        return encode(response)
    except EncodeError:
        logger.exception("a result could not be encoded as JSON")
        return encode(internal_error(response.get("id")))


def encode_batch(responses: list[dict[str, Any]]) -> bytes:
    """The line of a batch's responses, each that is not JSON replaced by an internal error."""
    try:
        return encode(responses)
    except EncodeError:
        fixed = []
        for response in responses:
            try:
                encode(response)
            except EncodeError:
                logger.exception("a result could not be encoded as JSON")
                fixed.append(internal_error(response.get("id")))
            else:
                fixed.append(response)
        return encode(fixed)


def _valid_id(value: Any) -> bool:
    # JSON-RPC 2.0: a String, Number or Null. bool is an int in Python.
    return value is None or (type(value) in (str, int, float))


def parse_request(obj: Any) -> Request | dict[str, Any]:
    """Validate one request object: the request, or the `INVALID_REQUEST` response to send instead.

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
    if "params" in obj and type(params) not in (dict, list):
        return error_response(
            msg_id, INVALID_REQUEST, "invalid request: params must be an object or an array"
        )
    return (msg_id, method, params, notification)
