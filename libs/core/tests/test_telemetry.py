"""Tracing across a client and a server, and the trace id in INTERNAL errors.

The tests build their own TracerProvider and hand it to running_server, so they never
touch the process-global provider (which OpenTelemetry lets a process set only once).
"""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core.telemetry import current_trace_id, setup_telemetry
from genai_core.testing import running_server
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode as OtelStatusCode


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


async def _spans(exporter: InMemorySpanExporter, kinds: set[SpanKind]) -> dict[SpanKind, object]:
    """The server span may end just after the client has its answer: wait briefly for both."""
    for _ in range(100):
        found = {s.kind: s for s in exporter.get_finished_spans()}
        if kinds <= set(found):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"spans {kinds} not all finished: {exporter.get_finished_spans()}")


async def test_client_and_server_spans_share_one_trace(specs, fake, exporter, provider):
    async with running_server(specs, tracer_provider=provider) as (_, channel):
        await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok"))
        spans = await _spans(exporter, {SpanKind.CLIENT, SpanKind.SERVER})
    client, server = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert client.context.trace_id == server.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.parent.is_remote
    assert client.parent is None  # the call was made outside any span: the client span is the root
    assert "Tokenize" in client.name and "Tokenize" in server.name


async def test_call_inside_a_span_joins_that_trace(specs, exporter, provider):
    tracer = provider.get_tracer(__name__)
    async with running_server(specs, tracer_provider=provider) as (_, channel):
        with tracer.start_as_current_span("request") as root:
            await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok"))
        spans = await _spans(exporter, {SpanKind.CLIENT, SpanKind.SERVER, SpanKind.INTERNAL})
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    assert spans[SpanKind.CLIENT].parent.span_id == root.get_span_context().span_id


async def test_internal_error_names_the_trace_id_of_the_call(specs, fake, exporter, provider):
    async with running_server(specs, tracer_provider=provider) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="boom"))
        spans = await _spans(exporter, {SpanKind.CLIENT, SpanKind.SERVER})
    assert info.value.code() is grpc.StatusCode.INTERNAL
    match = re.search(r"trace id ([0-9a-f]{32})", info.value.details())
    assert match, info.value.details()
    assert match.group(1) == format(spans[SpanKind.CLIENT].context.trace_id, "032x")
    assert fake.secret not in info.value.details()


@pytest.mark.parametrize(
    ("name", "code", "span_status"),
    [
        # OpenTelemetry's gRPC conventions: a server span is an error only for server-side faults.
        ("not_found", grpc.StatusCode.NOT_FOUND, OtelStatusCode.UNSET),
        ("boom", grpc.StatusCode.INTERNAL, OtelStatusCode.ERROR),
    ],
)
async def test_server_span_records_the_error_code(specs, exporter, provider, name, code, span_status):
    async with running_server(specs, tracer_provider=provider) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer=name))
        spans = await _spans(exporter, {SpanKind.CLIENT, SpanKind.SERVER})
    client, server = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert client.attributes["rpc.grpc.status_code"] == code.value[0]  # the client side does see it
    assert server.attributes["rpc.grpc.status_code"] == code.value[0]
    assert server.status.status_code is span_status


def test_current_trace_id():
    assert current_trace_id() == ""
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("x") as span:
        assert current_trace_id() == format(span.get_span_context().trace_id, "032x")
        assert re.fullmatch(r"[0-9a-f]{32}", current_trace_id())


def test_setup_telemetry_builds_a_provider_with_the_service_name_and_extra_processors(exporter):
    provider = setup_telemetry("unit-test-service", "", extra_processors=(SimpleSpanProcessor(exporter),))
    try:
        assert provider.resource.attributes["service.name"] == "unit-test-service"
        with provider.get_tracer(__name__).start_as_current_span("work"):
            pass
        assert [s.name for s in exporter.get_finished_spans()] == ["work"]
        # W3C trace context and baggage travel on every hop.
        assert {"traceparent", "baggage"} <= set(propagate.get_global_textmap().fields)
    finally:
        provider.shutdown()
