"""Downstream calls: failures of the callee become our own errors through one table, naming the service."""

from __future__ import annotations

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai_core import errors
from genai_core.downstream import ERRORS, Call, Downstream, translate
from genai_core.settings import DownstreamSettings
from genai_core.status import GRPC_CODES
from genai_core.testing import running_server


def _failure(code: grpc.StatusCode, details: str = "details") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize("code", list(ERRORS))
def test_each_listed_code_keeps_its_meaning(code):
    error = translate("embedding", _failure(code))
    assert GRPC_CODES[error.code] == code
    assert "embedding" in error.message


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])
def test_a_callee_bug_is_a_failed_precondition_naming_it(code):
    error = translate("inference", _failure(code, "internal error; report trace id 1"))
    assert isinstance(error, errors.FailedPrecondition)
    assert error.reason == "DOWNSTREAM_ERROR" and error.resource_name == "inference"


def test_unavailable_hides_the_address(caplog):
    error = translate("inference", _failure(grpc.StatusCode.UNAVAILABLE, "ipv4:127.0.0.1:50052: Failed to connect"))
    assert isinstance(error, errors.Unavailable)
    assert error.message == "the inference service is unavailable; retry shortly"
    assert "127.0.0.1:50052" in caplog.text  # logged for the operator


@pytest.fixture
async def tokenizer(specs):
    async with running_server(specs) as (_, channel):
        yield Downstream(DownstreamSettings({}), channels={"tokenizer": channel})


async def test_a_unary_call_answers(tokenizer):
    reply = await tokenizer.client("tokenizer").Tokenize(pb.TokenizeRequest(tokenizer="ok", request_id="r1"))
    assert reply.request_id == "r1"


async def test_the_callees_errors_arrive_as_ours(tokenizer):
    client = tokenizer.client("tokenizer")
    with pytest.raises(errors.NotFound, match="the tokenizer service failed: tokenizer 'nope' does not exist"):
        await client.Tokenize(pb.TokenizeRequest(tokenizer="not_found"))
    with pytest.raises(errors.InvalidArgument) as caught:
        await client.Tokenize(pb.TokenizeRequest(tokenizer="invalid"))
    assert caught.value.field_violations[0].field == "tokenizer.texts[3]"
    with pytest.raises(errors.FailedPrecondition, match="report trace id"):
        await client.Tokenize(pb.TokenizeRequest(tokenizer="boom"))


async def test_a_service_that_is_down_is_unavailable():
    downstream = Downstream(DownstreamSettings({"tokenizer": "127.0.0.1:1"}, timeout=5.0))
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await downstream.client("tokenizer").Tokenize(pb.TokenizeRequest(tokenizer="ok"))
        assert "127.0.0.1" not in caught.value.message
    finally:
        await downstream.close()


def test_a_service_without_a_target_names_the_variable():
    downstream = Downstream(DownstreamSettings({}), caller_prefix="GENAI_RETRIEVAL_")
    with pytest.raises(errors.Unavailable, match="set GENAI_RETRIEVAL_INFERENCE_TARGET"):
        downstream.client("inference")


class _StreamCall:
    """Stands in for a grpc server-streaming call: yields messages, then fails or ends; records cancel()."""

    def __init__(self, messages: list[str], failure: grpc.aio.AioRpcError | None = None) -> None:
        self.messages, self.failure, self.cancelled = messages, failure, False

    async def __aiter__(self):
        for message in self.messages:
            yield message
        if self.failure:
            raise self.failure

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def test_stream_failures_arrive_as_ours_after_the_messages():
    seen = []
    with pytest.raises(errors.ResourceExhausted, match="the inference service failed: queue full"):
        async for message in Call(_StreamCall(["a"], _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")),
                                  "inference"):
            seen.append(message)
    assert seen == ["a"]


async def test_a_stream_left_early_is_cancelled():
    raw = _StreamCall(["delta", "complete", "never read"])
    events = Call(raw, "inference").__aiter__()
    async for message in events:
        if message == "complete":
            break
    await events.aclose()
    assert raw.cancelled
