"""Traces over OTLP: ``[daemon.otel]`` (docs/configuration.md, docs/hosting.md).

Off by default. With ``endpoint`` set, the daemon starts OpenTelemetry's SDK
(a tracer provider, a batching span processor and the OTLP/HTTP protobuf
exporter) and hands its tracer to the MCP layer (:attr:`DaemonHost.tracer`),
which makes the spans (`bicameral.mcp`'s ``_trace``). The SDK is imported only
then: a daemon without ``[daemon.otel]`` never loads it, and it is an
optional extra (``pip install 'bicameral[otel]'``).

``endpoint`` is the collector's OTLP/HTTP base URL (``http://host:4318``),
as in ``OTEL_EXPORTER_OTLP_ENDPOINT``: the traces go to its ``/v1/traces``
(kept as given when the URL already ends so). ``service_name`` (default
``bicameral``) names the daemon in the traces; ``headers`` (a table of
strings) go on every export, e.g. a collector's credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bicameral.daemon._errors import ConfigError

__all__ = ["OTEL_KEYS", "OtelSettings", "Tracing", "otel_from_config"]

OTEL_KEYS = ("endpoint", "service_name", "headers")
"""The keys of ``[daemon.otel]``."""

#: Spans are sent at least this often (milliseconds), in batches.
EXPORT_DELAY_MS = 1000
#: One export gives up after this long (seconds): a dead collector costs the
#: daemon's stop at most this.
EXPORT_TIMEOUT = 5.0


@dataclass(frozen=True)
class OtelSettings:
    """``[daemon.otel]``: no `endpoint`, no traces."""

    endpoint: str | None = None
    service_name: str = "bicameral"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def traces_url(self) -> str | None:
        """Where the spans are posted: `endpoint`'s ``/v1/traces``."""
        if self.endpoint is None:
            return None
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def otel_from_config(config: Mapping[str, Any], path: Path | None) -> OtelSettings:
    """``[daemon.otel]`` of config.toml; `ConfigError` naming the file and key when invalid."""
    where = str(path) if path is not None else "config.toml"
    section = config.get("daemon", {})
    table = section.get("otel", {}) if isinstance(section, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [daemon.otel] must be a table")
    for key in table:
        if key not in OTEL_KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [daemon.otel] (known: {', '.join(OTEL_KEYS)})"
            )
    endpoint = table.get("endpoint")
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))
    ):
        raise ConfigError(
            f"{where}: [daemon.otel] endpoint must be an http:// or https:// URL, not {endpoint!r}"
        )
    service = table.get("service_name", "bicameral")
    if not isinstance(service, str) or not service:
        raise ConfigError(f"{where}: [daemon.otel] service_name must be a non-empty string")
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}: [daemon.otel] headers must be a table of strings")
    return OtelSettings(endpoint, service, tuple(sorted(headers.items())))


class Tracing:
    """The SDK's tracer provider while the daemon runs; `close` sends what is left."""

    def __init__(self, settings: OtelSettings) -> None:
        """Start the SDK (imported here); `ConfigError` when it is not installed."""
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ConfigError(
                f"[daemon.otel] endpoint is set but OpenTelemetry is not installed ({exc.name}): "
                "pip install 'bicameral[otel]'"
            ) from None
        from bicameral import __version__

        self.settings = settings
        resource = Resource.create(
            {"service.name": settings.service_name, "service.version": __version__}
        )
        exporter = OTLPSpanExporter(
            endpoint=settings.traces_url, headers=dict(settings.headers), timeout=EXPORT_TIMEOUT
        )
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS)
        )
        #: An OpenTelemetry ``Tracer``: what the MCP layer makes its spans with.
        self.tracer: Any = self._provider.get_tracer("bicameral", __version__)

    def close(self) -> None:
        """Export the spans not sent yet (bounded by `EXPORT_TIMEOUT`), then stop."""
        self._provider.shutdown()
