"""Prometheus metrics for gRPC servers: requests, latency histogram, in-flight gauge, pipeline stage latency."""

from __future__ import annotations

import inspect
import time

import grpc
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from genai_core.handlers import final_code, rewrap
from genai_core.spans import PIPELINE_ATTRIBUTE, STAGE_ATTRIBUTE

# Buckets span sub-millisecond tokenizer calls up to minute-long training or generation calls.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GrpcMetrics:
    """One registry per server, so several in-process servers (tests) never collide."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["grpc_service", "grpc_method"]
        self.requests = Counter(
            "genai_grpc_requests", "Finished RPCs by status code.", [*labels, "grpc_code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "genai_grpc_request_duration_seconds", "RPC latency from first byte to status.", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "genai_grpc_in_flight_requests", "RPCs being served now.", labels, registry=self.registry
        )
        self.stage_duration = Histogram(
            "genai_stage_duration_seconds", "Time of one stage of a pipeline (genai_core.spans.stage).",
            ["pipeline", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.service = service

    def stage_processor(self) -> SpanProcessor:
        """A span processor that records the duration of every ``spans.stage`` span in ``stage_duration``."""
        return StageMetrics(self.stage_duration)

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on ``host:port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return _MetricsInterceptor(self)


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2) if method.count("/") == 2 else ("", "", method)
    return service, name


class _MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics) -> None:
        self._m = metrics

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        labels = _split(handler_call_details.method)
        m = self._m

        def finish(context, started: float, failed: BaseException | None) -> None:
            m.requests.labels(*labels, final_code(context, failed).name).inc()
            m.latency.labels(*labels).observe(time.perf_counter() - started)
            m.in_flight.labels(*labels).dec()

        def unary(behavior):
            async def wrapper(request, context):
                started, failed = time.perf_counter(), None
                m.in_flight.labels(*labels).inc()
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    finish(context, started, failed)

            return wrapper

        def stream(behavior):
            async def wrapper(request, context):
                started, failed = time.perf_counter(), None
                m.in_flight.labels(*labels).inc()
                try:
                    result = behavior(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    finish(context, started, failed)

            return wrapper

        return rewrap(handler, unary, stream)


class StageMetrics(SpanProcessor):
    """Stage spans (``genai_core.spans.stage``) as a latency histogram by pipeline and stage.

    Spans are the one record of a stage's time; every span is recorded (``setup_telemetry`` uses an
    always-record sampler), so the histogram counts every request whatever is sampled for export.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        stage = attributes.get(STAGE_ATTRIBUTE)
        if stage is None or span.start_time is None or span.end_time is None:
            return
        self._histogram.labels(str(attributes.get(PIPELINE_ATTRIBUTE, "")), str(stage)).observe(
            (span.end_time - span.start_time) / 1e9)
