"""Shared fixtures for the core tests: a fake servicer built from a real generated proto.

The fake implements ``TokenizerService`` only so the tests run the production
interceptors (tracing, metrics, error mapping) over real protobuf messages; what it
does is chosen by the request's ``tokenizer`` field:

* ``"ok"``: answers with the request id echoed;
* a key of ``ERRORS``: raises that domain error;
* ``"boom"``: raises a plain ``RuntimeError`` carrying ``SECRET``;
* ``Detokenize`` sleeps ``float(request.tokenizer)`` seconds before answering.

A second, generic service (``test.Fake/Stream``) exercises the server-streaming path; ``test.Fake/Endless``
streams until the caller cancels, recording in ``ENDED`` how each of its streams ended.
"""

from __future__ import annotations

import asyncio
import types

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core import errors
from genai_core.server import ServiceSpec

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TokenizerService"].full_name
SECRET = "db password is hunter2"
STREAM_SERVICE = "test.Fake"
STREAM_METHOD = f"/{STREAM_SERVICE}/Stream"
ENDLESS_METHOD = f"/{STREAM_SERVICE}/Endless"
ENDED: list[str] = []


class PermissionDeniedError(errors.GenAIError):
    """Not in the taxonomy as a class; proves the mapping covers every ErrorCode."""

    code = errors.ErrorCode.PERMISSION_DENIED


class UnauthenticatedError(errors.GenAIError):
    code = errors.ErrorCode.UNAUTHENTICATED


def make_errors() -> dict[str, errors.GenAIError]:
    """One instance per GenAIError subclass (and per ErrorCode), keyed by a name the fake understands."""
    return {
        "invalid": errors.InvalidArgument.for_field("texts[3]", "12 characters exceed the limit of 10"),
        "not_found": errors.NotFound(
            "tokenizer 'nope' does not exist; known tokenizers: a, b",
            resource_type="tokenizer",
            resource_name="nope",
        ),
        "exists": errors.AlreadyExists(
            "tokenizer 'mine' exists; set overwrite to replace it", resource_type="tokenizer", resource_name="mine"
        ),
        "precondition": errors.FailedPrecondition("no chat template; pass one", reason="NO_CHAT_TEMPLATE"),
        "out_of_range": errors.OutOfRange("page token is past the end; restart the listing"),
        "exhausted": errors.ResourceExhausted("queue is full; retry in a second"),
        "unavailable": errors.Unavailable("still loading; retry shortly"),
        "deadline": errors.DeadlineExceeded("generation did not finish in 5s; raise the deadline"),
        "cancelled": errors.Cancelled("the caller cancelled the job"),
        "unimplemented": errors.Unimplemented("streaming is not offered by this deployment"),
        "denied": PermissionDeniedError("you may not train tokenizers; ask an admin"),
        "unauthenticated": UnauthenticatedError("send a bearer token"),
    }


class FakeTokenizerServicer(pb_grpc.TokenizerServiceServicer):
    def __init__(self) -> None:
        self.errors = make_errors()

    async def Tokenize(self, request, context):
        name = request.tokenizer
        if name == "ok":
            return pb.TokenizeResponse(request_id=request.request_id, tokenizer="ok")
        if name == "boom":
            raise RuntimeError(SECRET)
        if name in self.errors:
            raise self.errors[name]
        raise errors.NotFound(f"fake tokenizer '{name}' is unknown", resource_type="tokenizer", resource_name=name)

    async def Detokenize(self, request, context):
        await asyncio.sleep(float(request.tokenizer or 0))
        return pb.DetokenizeResponse(texts=["slept"])


def _stream_handler():
    async def stream(request: bytes, context):
        # Two items, then the error named by the request (or a clean end); b"slow" waits 2 s in between.
        yield b"one"
        if request == b"slow":
            await asyncio.sleep(2.0)
        yield b"two"
        if request == b"not_found":
            raise errors.NotFound("stream item 3 does not exist", resource_type="item", resource_name="3")
        if request == b"boom":
            raise RuntimeError(SECRET)

    async def endless(request: bytes, context):
        try:
            n = 0
            while True:
                n += 1
                yield b"complete" if n == 3 else b"item"
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            ENDED.append("cancelled")
            raise
        except GeneratorExit:
            ENDED.append("closed")
            raise

    return grpc.method_handlers_generic_handler(
        STREAM_SERVICE, {"Stream": grpc.unary_stream_rpc_method_handler(stream),
                         "Endless": grpc.unary_stream_rpc_method_handler(endless)}
    )


def fake_specs() -> list[ServiceSpec]:
    servicer = FakeTokenizerServicer()
    return [
        ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_TokenizerServiceServicer_to_server(servicer, server)),
        ServiceSpec(STREAM_SERVICE, lambda server: server.add_generic_rpc_handlers((_stream_handler(),))),
    ]


@pytest.fixture
def specs() -> list[ServiceSpec]:
    return fake_specs()


@pytest.fixture
def fake() -> types.SimpleNamespace:
    """The fake's constants for test modules (conftest is not importable under --import-mode=importlib)."""
    return types.SimpleNamespace(
        service=SERVICE_NAME,
        secret=SECRET,
        stream_service=STREAM_SERVICE,
        stream_method=STREAM_METHOD,
        endless_method=ENDLESS_METHOD,
        ended=ENDED,
        errors=make_errors(),
    )
