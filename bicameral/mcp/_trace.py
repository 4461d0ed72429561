"""Traces of client requests (SPEC §13; ``[daemon.otel]``, `bicameral.daemon`'s ``_otel``).

W3C trace context (``traceparent``, ``tracestate``) in a request's ``_meta``
starts or continues a trace; the HTTP front copies the headers of that name
into ``_meta`` when the request has none there, so the one place that reads
them is here. Three spans, following OpenTelemetry's conventions for MCP:

* the client request (kind SERVER): ``{method} {tool or resource}``, with
  ``mcp.method.name``, ``mcp.session.id`` (the daemon's client id),
  ``jsonrpc.request.id`` and ``gen_ai.tool.name`` for a ``tools/call``;
* ``wait for {server}`` while the request waits for a server that is
  starting or restarting (only when it has to);
* the upstream call (kind CLIENT): ``{method} {tool}`` with
  ``bicameral.server`` and ``gen_ai.tool.name``; its context goes on to the
  server in the request's ``_meta`` (and, for a remote server, in the
  ``traceparent``/``tracestate`` headers too).

Tracing is on for a request when the daemon has a tracer; the client span
makes it current for the request's task (a context variable), where the
upstream spans find it. With no tracer nothing here imports OpenTelemetry
and each helper costs a context-variable read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import orjson

__all__ = ["TRACE_KEYS", "client_span", "trace_in_meta", "upstream_span", "wait_span"]

#: The W3C trace context's keys, in ``_meta`` as in HTTP headers.
TRACE_KEYS = ("traceparent", "tracestate")

_tracer: ContextVar[Any] = ContextVar("bicameral_tracer", default=None)

#: The params key that names what a request is about, by method.
_TARGET = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _name(method: str, params: Mapping[str, Any] | None) -> tuple[str, Any]:
    key = _TARGET.get(method)
    target = params.get(key) if key is not None and params is not None else None
    return (f"{method} {target}" if isinstance(target, str) else method), target


@contextlib.contextmanager
def client_span(
    tracer: Any, method: str, params: Mapping[str, Any], *, session: str, request_id: Any
) -> Iterator[None]:
    """The span of one client request, continuing the trace its ``_meta`` names."""
    if tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    meta = params.get("_meta")
    carrier = {}
    if isinstance(meta, dict):
        carrier = {k: meta[k] for k in TRACE_KEYS if isinstance(meta.get(k), str)}
    parent = TraceContextTextMapPropagator().extract(carrier)
    name, target = _name(method, params)
    attributes = {"mcp.method.name": method, "mcp.session.id": session}
    if isinstance(request_id, str | int):
        attributes["jsonrpc.request.id"] = str(request_id)
    if method == "tools/call" and isinstance(target, str):
        attributes["gen_ai.tool.name"] = target
    token = _tracer.set(tracer)
    try:
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ):
            yield
    finally:
        _tracer.reset(token)


@contextlib.contextmanager
def wait_span(server: str) -> Iterator[None]:
    """The span of a wait for `server` to be (re)started, when the request is traced."""
    tracer = _tracer.get()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        f"wait for {server}", attributes={"bicameral.server": server}
    ):
        yield


@contextlib.contextmanager
def upstream_span(
    server: str, method: str, params: Mapping[str, Any] | None
) -> Iterator[Mapping[str, Any] | None]:
    """The span of the call to `server`; yields `params` with its context in ``_meta``."""
    tracer = _tracer.get()
    if tracer is None:
        yield params
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    name, target = _name(method, params)
    attributes = {"mcp.method.name": method, "bicameral.server": server}
    if method == "tools/call" and isinstance(target, str):
        attributes["gen_ai.tool.name"] = target
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        sent = dict(params or {})
        meta = sent.get("_meta")
        sent["_meta"] = {**(meta if isinstance(meta, dict) else {}), **carrier}
        yield sent


def trace_in_meta(
    message: dict[str, Any], headers: Mapping[bytes, bytes], body: bytes
) -> tuple[bytes, Any]:
    """A request's W3C trace context headers, in its ``_meta`` unless it has its own there.

    For the HTTP front: the spans read the context from ``_meta`` alone, what
    any client (HTTP or the stdio bridge) can send. Returns the body to
    deliver and the request's ``_meta``.
    """
    params = message.get("params")
    if params is None:
        params = message["params"] = {}
    meta = params.get("_meta") if isinstance(params, dict) else None
    if meta is None and isinstance(params, dict):
        meta = params["_meta"] = {}
    if not isinstance(meta, dict) or "traceparent" in meta:
        return body, meta
    for key in (b"traceparent", b"tracestate"):
        value = headers.get(key)
        if value is not None:
            meta[key.decode()] = value.decode("latin-1")
    return orjson.dumps(message), meta
