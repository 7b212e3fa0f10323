"""OpenTelemetry tracing: one provider per process, OTLP export when an endpoint is set, and the one policy
of what is traced and what a span may hold.

Spans come from the gRPC interceptors (``genai_core.tracing``) and, in the gateway, the HTTP middleware;
services add GenAI attributes to them through ``genai_core.spans``. W3C ``traceparent`` travels in gRPC
metadata on every hop.

    >>> traced_rpc("/grpc.health.v1.Health/Check"), traced_rpc("/genai.inference.v1.InferenceService/Chat")
    (False, True)
    >>> traced_http("/readyz"), traced_http("/v1/chat/completions")
    (False, True)
"""

from __future__ import annotations

import logging

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import AlwaysRecordSampler, _get_from_env_or_default
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

# What is not traced, for every service and the gateway: probes and scrapes run every few seconds and would
# bury the requests a reader looks for (start-up alone made ~60 health-check traces in 8 s).
UNTRACED_RPC_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
})
UNTRACED_HTTP_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/favicon.ico"})

# The standard switch of the OpenTelemetry GenAI instrumentations. Prompts, completions, queries and document
# texts may hold personal data: they go into spans only when the operator turns this on.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_capture = {"content": False}
# The provider of the server handling the current call travels in the context, so spans that a handler opens
# (genai_core.spans) and calls it makes go to the same provider when several servers share a process (tests).
_PROVIDER = otel_context.create_key("genai-tracer-provider")
_SCOPE = "genai_core"


def traced_rpc(method: str) -> bool:
    """Whether a gRPC call of ``method`` (``/package.Service/Method``) gets spans, on both sides."""
    service = method.lstrip("/").split("/", 1)[0]
    return service not in UNTRACED_RPC_SERVICES


def traced_http(path: str) -> bool:
    """Whether an HTTP request for ``path`` gets a span."""
    return path.rstrip("/") not in UNTRACED_HTTP_PATHS if path != "/" else True


def capture_content() -> bool:
    """Whether spans may hold prompt, completion, query and document text (see ``CAPTURE_CONTENT_ENV``)."""
    return _capture["content"]


def set_capture_content(on: bool) -> None:
    """Turn content capture on or off for this process; ``setup_telemetry`` calls it from the settings."""
    _capture["content"] = bool(on)


def setup_telemetry(
    service_name: str,
    otlp_endpoint: str = "",
    extra_processors: tuple[SpanProcessor, ...] = (),
    capture_content: bool = False,
) -> TracerProvider:
    """Install the global tracer provider for this process and return it.

    ``otlp_endpoint`` is the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP/gRPC); empty keeps spans
    in-process only (still propagated, so downstream traces stay joined). Every span is recorded, so span
    processors (the stage metrics) see all of them; a sampler from ``OTEL_TRACES_SAMPLER`` decides only
    what is exported. ``OTEL_RESOURCE_ATTRIBUTES`` is honoured (e.g. ``openinference.project.name=genai``
    picks the Phoenix project).
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=AlwaysRecordSampler(_get_from_env_or_default()),
    )
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
    set_capture_content(capture_content)
    if capture_content:
        logger.warning("spans record prompt, completion and document text (%s is on)", CAPTURE_CONTENT_ENV)
    return provider


def with_provider(ctx: otel_context.Context, provider: object | None) -> otel_context.Context:
    """``ctx`` carrying ``provider`` (if any) for what runs under it."""
    return otel_context.set_value(_PROVIDER, provider, ctx) if provider is not None else ctx


def provider_of(provider: object | None = None) -> object:
    """``provider``, else the one the current context carries, else the global one."""
    if provider is not None:
        return provider
    return otel_context.get_value(_PROVIDER) or trace.get_tracer_provider()


def tracer(provider: object | None = None) -> trace.Tracer:
    """The platform's tracer from ``provider_of(provider)``."""
    return provider_of(provider).get_tracer(_SCOPE)  # type: ignore[attr-defined]


def service_name(provider: object | None = None) -> str:
    """The ``service.name`` of ``provider_of(provider)``'s resource, or ``""``."""
    provider = provider_of(provider)
    resource = getattr(provider, "resource", None)
    name = resource.attributes.get("service.name", "") if resource is not None else ""
    return "" if str(name).startswith("unknown_service") else str(name)


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or an empty string outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
