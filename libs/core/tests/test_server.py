"""GrpcServer in-process: error mapping over the wire, health, reflection, metrics, healthcheck."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core import healthcheck
from genai_core.channels import create_channel
from genai_core.server import GrpcServer
from genai_core.settings import ServerSettings
from genai_core.status import GRPC_CODES, field_violations
from genai_core.testing import running_server
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _rich_details(error: grpc.aio.AioRpcError) -> list:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries google.rpc details"
    out = []
    for any_ in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.ResourceInfo):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                out.append(msg)
    return out


@pytest.fixture
async def served(specs):
    async with running_server(specs) as (server, channel):
        yield server, channel


# -- error mapping ----------------------------------------------------------------------------


ERROR_NAMES = [
    "invalid", "not_found", "exists", "precondition", "out_of_range", "exhausted",
    "unavailable", "deadline", "cancelled", "unimplemented", "denied", "unauthenticated",
]


def test_error_names_cover_every_fake_error(fake):
    assert sorted(ERROR_NAMES) == sorted(fake.errors)


@pytest.mark.parametrize("name", ERROR_NAMES)
async def test_domain_errors_reach_the_client_mapped(served, fake, name):
    _, channel = served
    expected = fake.errors[name]
    stub = pb_grpc.TokenizerServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Tokenize(pb.TokenizeRequest(tokenizer=name, texts=["x"]))
    error = info.value
    assert error.code() is GRPC_CODES[expected.code]
    assert error.details() == expected.message
    details = _rich_details(error)
    (error_info,) = [d for d in details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert error_info.reason == (expected.reason or expected.code.value)
    assert field_violations(error) == [(v.field, v.description) for v in expected.field_violations]
    resources = [d for d in details if isinstance(d, error_details_pb2.ResourceInfo)]
    if expected.resource_name:
        assert [(r.resource_type, r.resource_name) for r in resources] == [
            (expected.resource_type, expected.resource_name)
        ]
    else:
        assert resources == []


async def test_invalid_argument_field_violations_are_readable(served):
    _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="invalid"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == [("texts[3]", "12 characters exceed the limit of 10")]
    assert info.value.details().startswith("texts[3]:")


async def test_unexpected_exception_is_internal_without_its_text(served, fake, caplog):
    _, channel = served
    with caplog.at_level(logging.ERROR, logger="genai_core.status"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="boom"))
    error = info.value
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "trace id" in error.details()
    assert fake.secret not in error.details()
    assert "RuntimeError" not in error.details()
    assert fake.secret not in str(error.trailing_metadata())
    assert field_violations(error) == []
    # The operator, not the caller, gets the traceback.
    records = [r for r in caplog.records if r.name == "genai_core.status"]
    assert records and "Tokenize" in records[-1].getMessage()
    assert records[-1].exc_info and fake.secret in str(records[-1].exc_info[1])


async def test_successful_call(served):
    _, channel = served
    reply = await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok", request_id="r1"))
    assert reply.request_id == "r1" and reply.tokenizer == "ok"


async def test_unimplemented_method_stays_unimplemented(served):
    _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.TokenizerServiceStub(channel).CountTokens(pb.CountTokensRequest(texts=["x"]))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_server_streaming_errors_are_mapped_after_items(served, fake):
    _, channel = served
    call = channel.unary_stream(fake.stream_method)(b"not_found")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call:
            received.append(item)
    assert received == [b"one", b"two"]
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "stream item 3 does not exist"

    call = channel.unary_stream(fake.stream_method)(b"boom")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert fake.secret not in info.value.details()

    items = [item async for item in channel.unary_stream(fake.stream_method)(b"fine")]
    assert items == [b"one", b"two"]


# -- health -------------------------------------------------------------------------------------


async def test_health_follows_the_server_state(specs, fake):
    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5), specs)
    port = await server.start()
    assert port > 0 and server.port == port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        for name in ("", fake.service, fake.stream_service):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == NOT_SERVING, name

        await server.set_serving()
        for name in ("", fake.service, fake.stream_service):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == SERVING, name

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND

        # Stop while a call is in flight: health turns NOT_SERVING at once, the call still finishes.
        in_flight = asyncio.ensure_future(
            pb_grpc.TokenizerServiceStub(channel).Detokenize(pb.DetokenizeRequest(tokenizer="0.4"), timeout=5)
        )
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop(2.0))
        await asyncio.sleep(0.05)
        for name in ("", fake.service):
            # New RPCs are refused while draining, so ask the servicer itself.
            reply = await server.health.Check(health_pb2.HealthCheckRequest(service=name), None)
            assert reply.status == NOT_SERVING, name
        # Changes after shutdown began are ignored: it stays NOT_SERVING.
        await server.set_serving()
        reply = await server.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        assert reply.status == NOT_SERVING
        assert (await in_flight).texts == ["slept"]
        await asyncio.wait_for(stopping, 5)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.mark.filterwarnings("ignore:coroutine 'HealthServicer.Watch' was never awaited")
async def test_health_watch_sees_not_serving_when_stop_begins(specs):
    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5), specs)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await server.set_serving()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop(0.3))
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        watch.cancel()
        await stopping
    finally:
        await channel.close()
        await server.stop(0)


async def test_running_server_is_serving_after_ready(specs):
    ran = []

    async def ready():
        ran.append(True)

    async with running_server(specs, ready=ready) as (_, channel):
        assert ran == [True]
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == SERVING


async def test_healthcheck_cli(served):
    server, _ = served
    target = f"127.0.0.1:{server.port}"
    # The probe uses a blocking channel: run it off the loop that serves.
    assert await asyncio.to_thread(healthcheck.check, target) is True
    assert await asyncio.to_thread(healthcheck.main, [target]) == 0
    assert await asyncio.to_thread(healthcheck.main, [target, "no.Such"]) == 1
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["a", "b", "c"]) == 2


async def test_healthcheck_cli_not_serving(specs):
    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0), specs)
    port = await server.start()
    try:
        assert await asyncio.to_thread(healthcheck.main, [f"127.0.0.1:{port}"]) == 1
    finally:
        await server.stop(0)
    # Nothing listens there any more.
    assert await asyncio.to_thread(healthcheck.check, f"127.0.0.1:{port}", "", 1.0) is False


# -- reflection ---------------------------------------------------------------------------------


async def _reflect(channel, request: reflection_pb2.ServerReflectionRequest):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([request]), timeout=5)
    return [reply async for reply in call]


async def test_reflection_lists_every_mounted_service(served, fake):
    _, channel = served
    (reply,) = await _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert {fake.service, fake.stream_service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_answers_v1_and_v1alpha(served, fake, version):
    # grpcurl >= 1.9 and `buf curl` ask for v1 first; older clients only know v1alpha. Same messages on the wire.
    _, channel = served
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=fake.service)]
    listed, described = [reply async for reply in info(iter(requests), timeout=5)]
    names = {s.name for s in listed.list_services_response.service}
    assert {fake.service, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert any(b"TokenizerService" in f for f in described.file_descriptor_response.file_descriptor_proto)


async def test_buf_curl_calls_through_reflection_v1(served, fake):
    server, _ = served
    curl = [str(Path(sys.executable).parent / "buf"), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
            "--reflect-protocol", "grpc-v1"]  # v1 only: no fallback to v1alpha

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*curl, *args], capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(run, "--list-services", f"http://127.0.0.1:{server.port}")
    assert listed.returncode == 0, listed.stderr
    assert fake.service in listed.stdout.split() and "grpc.reflection.v1.ServerReflection" in listed.stdout.split()
    called = await asyncio.to_thread(
        run, "-d", '{"tokenizer": "ok", "request_id": "via-v1"}', f"http://127.0.0.1:{server.port}/{fake.service}/Tokenize"
    )
    assert called.returncode == 0, called.stderr
    assert "via-v1" in called.stdout


async def test_reflection_describes_the_service(served, fake):
    _, channel = served
    (reply,) = await _reflect(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=fake.service))
    files = reply.file_descriptor_response.file_descriptor_proto
    assert files, reply
    assert any(b"TokenizerService" in f for f in files)


# -- metrics ------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_code(served, fake):
    server, channel = served
    stub = pb_grpc.TokenizerServiceStub(channel)
    await stub.Tokenize(pb.TokenizeRequest(tokenizer="ok"))
    await stub.Tokenize(pb.TokenizeRequest(tokenizer="ok"))
    for name in ("not_found", "invalid", "boom"):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Tokenize(pb.TokenizeRequest(tokenizer=name))
    await stub.Detokenize(pb.DetokenizeRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in channel.unary_stream(fake.stream_method)(b"not_found"):
            pass

    registry = server.metrics.registry

    def requests(method: str, code: str, service: str = fake.service) -> float | None:
        return registry.get_sample_value(
            "genai_grpc_requests_total", {"grpc_service": service, "grpc_method": method, "grpc_code": code}
        )

    assert requests("Tokenize", "OK") == 2
    assert requests("Tokenize", "NOT_FOUND") == 1
    assert requests("Tokenize", "INVALID_ARGUMENT") == 1
    assert requests("Tokenize", "INTERNAL") == 1
    assert requests("Tokenize", "UNKNOWN") is None
    assert requests("Detokenize", "OK") == 1
    assert requests("Stream", "NOT_FOUND", fake.stream_service) == 1
    labels = {"grpc_service": fake.service, "grpc_method": "Tokenize"}
    assert registry.get_sample_value("genai_grpc_request_duration_seconds_count", labels) == 5
    assert registry.get_sample_value("genai_grpc_in_flight_requests", labels) == 0


async def test_metrics_label_calls_cut_by_the_client_deadline(specs, fake):
    async with running_server(specs) as (server, _):
        channel = create_channel(f"127.0.0.1:{server.port}", default_timeout=0.2)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.TokenizerServiceStub(channel).Detokenize(pb.DetokenizeRequest(tokenizer="2.0"))
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await channel.close()
        labels = {"grpc_service": fake.service, "grpc_method": "Detokenize"}
        for _ in range(100):  # the server notices the cancellation just after the client
            if server.metrics.registry.get_sample_value("genai_grpc_in_flight_requests", labels) == 0:
                break
            await asyncio.sleep(0.02)
        codes = {
            s.labels["grpc_code"]
            for metric in server.metrics.registry.collect()
            for s in metric.samples
            if s.name == "genai_grpc_requests_total" and s.labels["grpc_method"] == "Detokenize"
        }
        assert codes and codes <= {"CANCELLED", "DEADLINE_EXCEEDED"}


async def test_each_server_has_its_own_metrics_registry(specs):
    async with running_server(specs) as (first, channel):
        await pb_grpc.TokenizerServiceStub(channel).Tokenize(pb.TokenizeRequest(tokenizer="ok"))
    async with running_server(specs) as (second, _):
        pass
    assert first.metrics.registry is not second.metrics.registry
    assert second.metrics.registry.get_sample_value(
        "genai_grpc_requests_total",
        {"grpc_service": "genai.tokenizer.v1.TokenizerService", "grpc_method": "Tokenize", "grpc_code": "OK"},
    ) is None


async def test_bind_failure_is_reported(specs):
    taken = GrpcServer(ServerSettings(host="127.0.0.1", port=0), specs)
    port = await taken.start()
    clash = GrpcServer(ServerSettings(host="127.0.0.1", port=port), specs)
    try:
        # grpc itself raises "Failed to bind ..." when the port is taken; GrpcServer says "could not bind".
        with pytest.raises(RuntimeError, match="(?i)(could not|failed to) bind"):
            await clash.start()
    finally:
        await clash.stop(0)
        await taken.stop(0)


_CLOSING_SERVICE = """
import asyncio, sys
from genai_core.server import run_service
from genai_core.settings import ServerSettings

async def ready():
    if sys.argv[1] == "fail":
        raise RuntimeError("the model is missing")
    print("ready", flush=True)

async def close():
    print("closed", flush=True)

asyncio.run(run_service(ServerSettings(port=0, grace_seconds=0.5), "closing", [], ready, close=close))
"""


def _closing_service(mode: str):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _CLOSING_SERVICE, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_close_runs_after_the_drain_on_sigterm():
    import signal

    proc = _closing_service("ok")
    try:
        while proc.stdout.readline().strip() != "ready":
            pass
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "draining" in out and "closed" in out
    assert out.index("draining") < out.index("closed") < out.index("closing stopped")


def test_close_runs_when_loading_fails():
    proc = _closing_service("fail")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "the model is missing" in out and "closed" in out


def test_postgres_server_answers_and_stops():
    import subprocess

    from genai_core.testing import postgres_server

    with postgres_server() as dsn:
        out = subprocess.run(["psql", dsn, "-tAc", "select 40 + 2"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "42"
    gone = subprocess.run(["psql", dsn, "-tAc", "select 1"], capture_output=True, text=True)
    assert gone.returncode != 0
