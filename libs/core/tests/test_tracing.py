"""The gRPC span interceptors over a real server and channel: names, service attributes, what is not traced,
and every span ending however a call ends (read to the end, abandoned at ``complete``, cancelled)."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core import spans
from genai_core.channels import create_channel
from genai_core.metrics import GrpcMetrics
from genai_core.server import GrpcServer, ServiceSpec
from genai_core.settings import ServerSettings
from genai_core.testing import running_server
from genai_core.tracing import client_span_name, rpc_parts, server_span_name
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode as OtelStatusCode


def _provider(name: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def pair(specs, exporter):
    """A 'tokenizer' server and a 'gateway' channel to it, each with its own provider and one exporter."""
    server_provider, client_provider = _provider("tokenizer", exporter), _provider("gateway", exporter)
    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5), specs,
                        tracer_provider=server_provider)
    port = await server.start()
    await server.set_serving()
    channel = create_channel(f"127.0.0.1:{port}", tracer_provider=client_provider)
    try:
        yield server, channel, port
    finally:
        await channel.close()
        await server.stop(0.5)
        server_provider.shutdown()
        client_provider.shutdown()


async def _finished(exporter: InMemorySpanExporter, count: int, timeout: float = 5.0):
    """Spans end in done callbacks and closing streams, just after the caller has its answer."""
    for _ in range(int(timeout / 0.02)):
        found = exporter.get_finished_spans()
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} spans expected, finished: {[s.name for s in exporter.get_finished_spans()]}")


def _by_kind(found) -> dict[SpanKind, object]:
    return {s.kind: s for s in found}


def test_names_say_the_side_and_the_service():
    method = "/genai.inference.v1.InferenceService/ChatStream"
    assert rpc_parts(method) == ("genai.inference.v1.InferenceService", "ChatStream", "inference")
    assert server_span_name(method) == "inference.ChatStream"
    assert client_span_name("retrieval", method) == "retrieval → inference.ChatStream"
    assert server_span_name(b"/test.Fake/Stream") == "Fake.Stream"  # outside the services table


async def test_one_hop_is_a_client_span_over_a_server_span_each_naming_its_service(pair, exporter):
    _, channel, port = pair
    await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok"))
    found = _by_kind(await _finished(exporter, 2))
    client, server = found[SpanKind.CLIENT], found[SpanKind.SERVER]
    assert client.name == "gateway → tokenizer.Tokenize"
    assert server.name == "tokenizer.Tokenize"
    assert server.parent.span_id == client.context.span_id and server.parent.is_remote
    assert client.attributes["service.name"] == "gateway" and client.attributes["peer.service"] == "tokenizer"
    assert client.attributes["server.port"] == port and client.attributes["server.address"] == "127.0.0.1"
    assert server.attributes["service.name"] == "tokenizer"
    for span in (client, server):
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "genai.tokenizer.v1.TokenizerService"
        assert span.attributes["rpc.method"] == "Tokenize"
        assert span.attributes["rpc.grpc.status_code"] == 0


async def test_health_checks_and_reflection_make_no_spans(pair, exporter):
    _, channel, _ = pair
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(5):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for answer in stream:
        assert answer.list_services_response.service
    await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok"))  # a traced call
    found = await _finished(exporter, 2)
    await asyncio.sleep(0.1)
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "gateway → tokenizer.Tokenize", "tokenizer.Tokenize"], [s.name for s in found]


async def test_a_stream_read_to_its_end_ends_both_spans_ok(pair, exporter, fake):
    _, channel, _ = pair
    call = channel.unary_stream(fake.stream_method)(b"")
    assert [m async for m in call] == [b"one", b"two"]
    found = _by_kind(await _finished(exporter, 2))
    assert found[SpanKind.CLIENT].name == "gateway → Fake.Stream"
    for span in found.values():
        assert span.attributes["rpc.grpc.status_code"] == 0
        assert span.status.status_code is OtelStatusCode.UNSET


async def test_a_caller_that_stops_at_complete_and_cancels_ends_every_span(pair, exporter, fake):
    _, channel, _ = pair
    fake.ended.clear()
    call = channel.unary_stream(fake.endless_method)(b"")
    while await call.read() != b"complete":
        pass
    call.cancel()  # what genai_core.downstream.Call and the gateway's streams do once they have `complete`
    found = _by_kind(await _finished(exporter, 2))
    client, server = found[SpanKind.CLIENT], found[SpanKind.SERVER]
    assert client.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert client.status.status_code is OtelStatusCode.UNSET  # the caller's own choice is not an error
    assert [e.name for e in client.events] == ["cancelled"]
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert server.status.status_code is OtelStatusCode.UNSET
    assert server.parent.span_id == client.context.span_id
    assert fake.ended  # the handler was stopped, not left generating


async def test_a_stream_left_unread_ends_its_span_when_the_channel_closes(specs, exporter, fake):
    """gRPC delivers a stream's status only after its last message was read, and the channel keeps such a
    call until then: a caller must cancel what it stops reading (genai_core.downstream.Call and the
    gateway's streams do). Closing the channel cancels what is left, and the span ends with it."""
    provider = _provider("gateway", exporter)
    async with running_server(specs) as (server, _):
        channel = create_channel(f"127.0.0.1:{server.port}", tracer_provider=provider)
        call = channel.unary_stream(fake.stream_method)(b"")
        assert await call.read() == b"one"  # and never reads again
        await asyncio.sleep(0.1)
        assert not exporter.get_finished_spans()
        await channel.close()
        (client,) = await _finished(exporter, 1)
    assert client.kind is SpanKind.CLIENT
    assert client.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert client.status.status_code is OtelStatusCode.UNSET


async def test_cancelled_streams_end_their_spans_without_context_errors(pair, exporter, fake, caplog):
    """Cancelled mid-stream from another task (a client that went away), many times over: every span
    ends and OpenTelemetry never fails to detach a context."""
    _, channel, _ = pair
    caplog.set_level(logging.ERROR)

    async def reader() -> None:
        async for _ in channel.unary_stream(fake.endless_method)(b""):
            pass

    tasks = [asyncio.ensure_future(reader()) for _ in range(8)]
    await asyncio.sleep(0.15)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    found = await _finished(exporter, 16)
    assert {s.kind for s in found} == {SpanKind.CLIENT, SpanKind.SERVER}
    assert all(s.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0] for s in found)
    await asyncio.sleep(0.2)  # let closed generators be finalized
    assert "detach" not in caplog.text and "different Context" not in caplog.text, caplog.text


async def test_cancelling_a_unary_call_reaches_the_server(pair, exporter):
    """The span interceptor hands the call itself back, so cancel() stops the server's work too."""
    server, channel, _ = pair
    call = pb_grpc.TokenizerServiceStub(channel).Detokenize(pb.DetokenizeRequest(tokenizer="5"))
    await asyncio.sleep(0.2)
    call.cancel()
    found = _by_kind(await _finished(exporter, 2, timeout=3.0))  # well before the 5 s sleep ends
    assert found[SpanKind.SERVER].attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert found[SpanKind.CLIENT].status.status_code is OtelStatusCode.UNSET


async def test_an_internal_error_is_recorded_on_the_server_span_only(pair, exporter, fake):
    _, channel, _ = pair
    with pytest.raises(grpc.aio.AioRpcError):
        await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="boom"))
    found = _by_kind(await _finished(exporter, 2))
    server, client = found[SpanKind.SERVER], found[SpanKind.CLIENT]
    assert server.status.status_code is OtelStatusCode.ERROR
    (event,) = [e for e in server.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert client.status.status_code is OtelStatusCode.ERROR
    assert fake.secret not in (client.status.description or "")  # the client sees only the generic message


async def test_spans_opened_in_a_handler_nest_under_its_server_span_and_feed_the_stage_histogram(exporter):
    """A handler's own spans (genai_core.spans) go to the server's provider, under the RPC's span."""
    provider = _provider("retrieval", exporter)
    metrics = GrpcMetrics("test.Fake")
    provider.add_span_processor(metrics.stage_processor())

    async def work(request: bytes, context):
        with spans.stage("search", "dense"):
            await asyncio.sleep(0.01)
        spans.current(spans.Operation.RETRIEVAL).attributes(**{"genai.test": True})
        return b"done"

    handler = grpc.method_handlers_generic_handler(
        "test.Fake", {"Work": grpc.unary_unary_rpc_method_handler(work)})
    spec = ServiceSpec("test.Fake", lambda server: server.add_generic_rpc_handlers((handler,)))
    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0), [spec], tracer_provider=provider, metrics=metrics)
    port = await server.start()
    channel = create_channel(f"127.0.0.1:{port}")  # the global (no-op) provider: no client span
    try:
        assert await channel.unary_unary("/test.Fake/Work")(b"") == b"done"
        found = {s.name: s for s in await _finished(exporter, 2)}
    finally:
        await channel.close()
        await server.stop(0)
        provider.shutdown()
    stage, rpc = found["retrieval.search.dense"], found["Fake.Work"]
    assert stage.parent.span_id == rpc.context.span_id
    assert stage.attributes["service.name"] == "retrieval"
    assert stage.attributes["openinference.span.kind"] == "CHAIN"
    assert rpc.attributes["openinference.span.kind"] == "RETRIEVER"
    assert rpc.attributes["gen_ai.operation.name"] == "retrieval"
    count = metrics.registry.get_sample_value(
        "genai_stage_duration_seconds_count", {"pipeline": "search", "stage": "dense"})
    total = metrics.registry.get_sample_value(
        "genai_stage_duration_seconds_sum", {"pipeline": "search", "stage": "dense"})
    assert count == 1 and total >= 0.01
