"""``/metrics`` for the MCP layer: per-server state, restarts, calls, errors, latency, tools.

Counting costs the ``tools/call`` path one ``perf_counter`` pair and a few
dict updates (`CallStats.record`), plus one entry in the bounded ring of
recent calls the dashboard shows (`RecentCalls`); ``prometheus_client`` is imported only
when ``/metrics`` is scraped (`McpCollector.collect`), never on the daemon's
path to readiness nor on the data path.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.mcp._registry import Registry

__all__ = ["BUCKETS", "CallStats", "McpCollector", "RecentCalls"]

#: Latency histogram bounds, seconds (a local call is ~1 ms, a remote one ~100 ms).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STATES = ("starting", "ready", "degraded", "restarting", "failed", "needs-login", "stopped")


class RecentCalls:
    """The last `size` requests forwarded to any server, oldest first.

    Each is ``(unix time, server, method, seconds, failed)``; ``count`` is
    how many were ever added (the dashboard sees that something happened
    without comparing the ring).
    """

    __slots__ = ("count", "items")

    def __init__(self, size: int = 200) -> None:
        self.items: collections.deque[tuple[float, str, str, float, bool]] = collections.deque(
            maxlen=size
        )
        self.count = 0

    def add(self, server: str, method: str, seconds: float, failed: bool) -> None:
        self.items.append((time.time(), server, str(method)[:64], seconds, failed))
        self.count += 1


class CallStats:
    """Requests a server was sent, by method: count, errors, latency histogram.

    When `recent` is set (the registry does), each request also goes into
    that ring under `server`.
    """

    __slots__ = ("by_method", "recent", "server")

    def __init__(self, server: str = "", recent: RecentCalls | None = None) -> None:
        # method -> [count, errors, sum, bucket counts...]
        self.by_method: dict[str, list[float]] = {}
        self.server = server
        self.recent = recent

    def record(self, method: str, seconds: float, failed: bool) -> None:
        if self.recent is not None:
            self.recent.add(self.server, method, seconds, failed)
        row = self.by_method.get(method)
        if row is None:
            if len(self.by_method) >= 64:  # a bound on label values a client can make up
                method = "other"
                row = self.by_method.get(method)
            if row is None:
                row = self.by_method[method] = [0.0] * (3 + len(BUCKETS))
        row[0] += 1
        if failed:
            row[1] += 1
        row[2] += seconds
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            row[3 + index] += 1


class McpCollector:
    """A ``prometheus_client`` collector over the registry's upstreams (read at scrape)."""

    def __init__(self, registry: Registry, sessions: Any = None) -> None:
        self.registry = registry
        self.sessions = sessions

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        state = GaugeMetricFamily(
            "bicameral_mcp_server_state",
            "1 for the state each configured MCP server is in",
            labels=["server", "state"],
        )
        up = GaugeMetricFamily(
            "bicameral_mcp_server_up", "1 when the MCP server is ready", labels=["server"]
        )
        restarts = CounterMetricFamily(
            "bicameral_mcp_server_restarts", "restarts of the MCP server", labels=["server"]
        )
        instances = GaugeMetricFamily(
            "bicameral_mcp_server_instances",
            "processes (or sessions) of the server",
            labels=["server"],
        )
        clients = GaugeMetricFamily(
            "bicameral_mcp_server_clients", "clients attached to the server", labels=["server"]
        )
        calls = CounterMetricFamily(
            "bicameral_mcp_requests",
            "requests forwarded to the server",
            labels=["server", "method"],
        )
        errors = CounterMetricFamily(
            "bicameral_mcp_request_errors",
            "forwarded requests that ended in an error",
            labels=["server", "method"],
        )
        offered = GaugeMetricFamily(
            "bicameral_mcp_server_offered_tools",
            "tools the server's clients are offered (its [mcp.servers.NAME.tools] rules applied)",
            labels=["server"],
        )
        schema_bytes = GaugeMetricFamily(
            "bicameral_mcp_server_tool_schema_bytes",
            "bytes of JSON of the offered tools' definitions (names, descriptions, schemas)",
            labels=["server"],
        )
        schema_tokens = GaugeMetricFamily(
            "bicameral_mcp_server_tool_schema_tokens_estimate",
            "an estimate of the tokens the offered tools' definitions cost a model (bytes / 4)",
            labels=["server"],
        )
        latency = HistogramMetricFamily(
            "bicameral_mcp_request_duration_seconds",
            "time to answer a forwarded request",
            labels=["server", "method"],
        )
        from bicameral.mcp._registry import up_source

        surface = self.registry.surface
        for upstream in self.registry.active():
            name = upstream.name
            sizes = surface.accounting(up_source(upstream))
            offered.add_metric([name], float(sizes["offered_tools"]))
            schema_bytes.add_metric([name], float(sizes["schema_bytes"]))
            schema_tokens.add_metric([name], float(sizes["schema_tokens"]))
            for each in _STATES:
                state.add_metric([name, each], 1.0 if upstream.state == each else 0.0)
            up.add_metric([name], 1.0 if upstream.state == "ready" else 0.0)
            restarts.add_metric([name], float(upstream.restarts))
            instances.add_metric([name], float(len(upstream.instances)))
            clients.add_metric([name], float(len(upstream.peers)))
            for method, row in sorted(upstream.calls.by_method.items()):
                calls.add_metric([name, method], row[0])
                errors.add_metric([name, method], row[1])
                cumulative, buckets = 0.0, []
                for bound, count in zip(BUCKETS, row[3:], strict=True):
                    cumulative += count
                    buckets.append((repr(bound), cumulative))
                buckets.append(("+Inf", row[0]))
                latency.add_metric([name, method], buckets, row[2])
        yield from (state, up, restarts, instances, clients, calls, errors, latency)
        yield from (offered, schema_bytes, schema_tokens)
        sessions = GaugeMetricFamily(
            "bicameral_mcp_clients",
            "MCP client sessions attached to the daemon",
            labels=["transport"],
        )
        http = len(self.sessions.sessions) if self.sessions is not None else 0
        sessions.add_metric(["all"], float(self.registry.clients))
        sessions.add_metric(["http"], float(http))
        yield sessions
