"""Traces: ``[daemon.otel] endpoint`` exports spans over OTLP/HTTP (SPEC §13).

A real daemon exports to a tiny OTLP/HTTP endpoint in the test, which
decodes the protobuf export with ``opentelemetry-proto``. The W3C trace
context a client sends (in the HTTP ``traceparent`` header, or in
``_meta`` through the stdio bridge) is the parent of bicameral's client
request span, whose child is the upstream call span (server and tool as
attributes); the server receives that span's context in ``_meta``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp._support import text, wait_until
from tests.mcp.conftest import McpHome
from tests.mcp.test_http import start, token

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Collector:
    """An OTLP/HTTP traces endpoint: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.add(self.path, request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, path: str, request: Any) -> None:
        with self._lock:
            self.paths.append(path)
            for resource_spans in request.resource_spans:
                service = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }.get("service.name")
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        if any(s["span_id"] == span.span_id.hex() for s in self.spans):
                            continue  # an export sent again (its answer came late)
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex(),
                                "kind": span.kind,
                                "service": service,
                                "attributes": {
                                    a.key: a.value.string_value for a in span.attributes
                                },
                            }
                        )

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if s["name"] == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def one(spans: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(spans) == 1, spans
    return spans[0]


async def test_http_traceparent_parents_the_request_and_the_upstream_call(
    mcp_home: McpHome, collector: Collector
) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")},
        daemon=f'[daemon.otel]\nendpoint = "{collector.url}"\nservice_name = "front-1"\n',
    )
    base = start(mcp_home)
    headers = {
        "Authorization": f"Bearer {token(mcp_home)}",
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "tracestate": "vendor=kept",
    }
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client,
    ):
        received = json.loads(text(await client.call_tool("alpha__meta", {})))

    request = wait_until(lambda: collector.named("tools/call alpha__meta"), timeout=30)[0]
    upstream = wait_until(lambda: collector.named("tools/call meta"), timeout=30)[0]
    assert collector.paths[0] == "/v1/traces"
    # The client's context is the request span's parent; the upstream call is its child.
    assert (request["trace_id"], request["parent_id"]) == (TRACE_ID, PARENT_ID)
    assert (upstream["trace_id"], upstream["parent_id"]) == (TRACE_ID, request["span_id"])
    assert request["service"] == upstream["service"] == "front-1"
    assert request["attributes"]["mcp.method.name"] == "tools/call"
    assert request["attributes"]["gen_ai.tool.name"] == "alpha__meta"
    assert request["attributes"]["mcp.session.id"].startswith("client-")
    assert upstream["attributes"]["bicameral.server"] == "alpha"
    assert upstream["attributes"]["gen_ai.tool.name"] == "meta"
    # The server heard the upstream span's context, and the client's tracestate.
    assert received["traceparent"] == f"00-{TRACE_ID}-{upstream['span_id']}-01"
    assert received["tracestate"] == "vendor=kept"
    # The client's other requests are traced too, in the same trace.
    initialize = one(collector.named("initialize"))
    assert (initialize["trace_id"], initialize["parent_id"]) == (TRACE_ID, PARENT_ID)


async def test_meta_traceparent_through_the_bridge_and_a_new_trace_without_one(
    mcp_home: McpHome, collector: Collector
) -> None:
    mcp_home.configure(
        {"alpha": mcp_home.test_server("alpha")},
        daemon=f'[daemon.otel]\nendpoint = "{collector.url}/v1/traces"\n',
    )
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    async with Client(mcp_home.params("alpha"), mode="legacy") as client:
        await client.call_tool("echo", {"text": "x"}, meta={"traceparent": traceparent})
        await client.call_tool("add", {"a": 1, "b": 2})

    echo = wait_until(lambda: collector.named("tools/call echo"), timeout=30)
    add = wait_until(lambda: len(collector.named("tools/call add")) == 2, timeout=30)
    assert add
    request = next(s for s in echo if s["kind"] == 2)  # SERVER: bicameral's request span
    upstream = next(s for s in echo if s["kind"] == 3)  # CLIENT: the call to alpha
    assert (request["trace_id"], request["parent_id"]) == (TRACE_ID, PARENT_ID)
    assert upstream["parent_id"] == request["span_id"]
    assert request["service"] == "bicameral"
    # No context given: a trace of its own, still request -> upstream call.
    plain, call = sorted(collector.named("tools/call add"), key=lambda s: s["kind"])
    assert plain["trace_id"] != TRACE_ID and plain["parent_id"] == ""
    assert (call["trace_id"], call["parent_id"]) == (plain["trace_id"], plain["span_id"])


def test_a_bad_otel_table_fails_the_start_in_one_line(mcp_home: McpHome) -> None:
    for table, complaint in (
        ('endpoint = "collector:4318"', "[daemon.otel] endpoint must be an http:// or https://"),
        ('endpont = "http://x"', "unknown key 'endpont' in [daemon.otel]"),
        ("headers = { a = 1 }", "[daemon.otel] headers must be a table of strings"),
    ):
        mcp_home.configure({}, daemon=f"[daemon.otel]\n{table}\n")
        done = mcp_home.cli("daemon", "start")
        assert done.returncode == 1
        assert complaint in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert mcp_home.descriptor() is None
