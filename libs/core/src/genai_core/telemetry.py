"""OpenTelemetry tracing: one provider per process, OTLP export when an endpoint is set.

Spans come from the gRPC (and, in the gateway, HTTP) interceptors; handlers add
attributes at most. W3C ``traceparent`` travels in gRPC metadata on every hop.
"""

from __future__ import annotations

import logging

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)


def setup_telemetry(
    service_name: str,
    otlp_endpoint: str = "",
    extra_processors: tuple[SpanProcessor, ...] = (),
) -> TracerProvider:
    """Install the global tracer provider for this process and return it.

    ``otlp_endpoint`` is the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP/gRPC); empty
    keeps spans in-process only (still propagated, so downstream traces stay joined).
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        # Imported lazily: the exporter pulls in its own gRPC stack only when used.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=not otlp_endpoint.startswith("https"))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        logger.info("exporting traces over OTLP to %s", otlp_endpoint)
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    return provider


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or an empty string outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
