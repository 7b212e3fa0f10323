"""genai_core.channels.create_channel: the default deadline and the retry policy."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core.channels import NO_DEADLINE, _service_config, create_channel
from genai_core.testing import running_server


@pytest.fixture
async def target(specs):
    async with running_server(specs) as (server, _):
        yield f"127.0.0.1:{server.port}"


async def test_default_deadline_applies_when_the_caller_sets_none(target):
    channel = create_channel(target, default_timeout=0.2)
    try:
        stub = pb_grpc.TokenizerServiceStub(channel)
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Detokenize(pb.DetokenizeRequest(tokenizer="2.0"))
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - started < 1.5
        # Quick calls are unaffected.
        assert (await stub.Detokenize(pb.DetokenizeRequest(tokenizer="0"))).texts == ["slept"]
    finally:
        await channel.close()


async def test_the_callers_deadline_wins_over_the_default(target):
    channel = create_channel(target, default_timeout=0.1)
    try:
        stub = pb_grpc.TokenizerServiceStub(channel)
        reply = await stub.Detokenize(pb.DetokenizeRequest(tokenizer="0.3"), timeout=5)
        assert reply.texts == ["slept"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Detokenize(pb.DetokenizeRequest(tokenizer="2.0"), timeout=0.2)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await channel.close()


async def test_no_deadline_opts_out_of_the_default(target):
    # Generation: the caller cannot bound how long it takes, and cancels the call itself when its client leaves.
    channel = create_channel(target, default_timeout=0.2)
    try:
        stub = pb_grpc.TokenizerServiceStub(channel)
        reply = await stub.Detokenize(pb.DetokenizeRequest(tokenizer="0.6"), timeout=NO_DEADLINE)
        assert reply.texts == ["slept"]
    finally:
        await channel.close()


async def test_default_deadline_applies_to_server_streaming(target, fake):
    channel = create_channel(target, default_timeout=0.5)
    try:
        items = [item async for item in channel.unary_stream(fake.stream_method)(b"fine")]
        assert items == [b"one", b"two"]
        started, items = time.perf_counter(), []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for item in channel.unary_stream(fake.stream_method)(b"slow"):
                items.append(item)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED and items == [b"one"]
        assert time.perf_counter() - started < 1.5
        slow = channel.unary_stream(fake.stream_method)(b"slow", timeout=NO_DEADLINE)
        assert [item async for item in slow] == [b"one", b"two"]
    finally:
        await channel.close()


async def test_unavailable_is_retried_then_reported(specs):
    async with running_server(specs) as (server, channel):
        stub = pb_grpc.TokenizerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Tokenize(pb.TokenizeRequest(tokenizer="unavailable"))
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Tokenize(pb.TokenizeRequest(tokenizer="not_found"))
        sample = server.metrics.registry.get_sample_value
        labels = {"grpc_service": "genai.tokenizer.v1.TokenizerService", "grpc_method": "Tokenize"}
        # The default policy makes 3 attempts for UNAVAILABLE and exactly one for anything else.
        assert sample("genai_grpc_requests_total", {**labels, "grpc_code": "UNAVAILABLE"}) == 3
        assert sample("genai_grpc_requests_total", {**labels, "grpc_code": "NOT_FOUND"}) == 1


def test_service_config_retries_only_unavailable():
    config = json.loads(_service_config(4))
    (method,) = config["methodConfig"]
    assert method["retryPolicy"]["maxAttempts"] == 4
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
