"""Downstream clients raise domain errors that name the service; the domain modules never import grpc."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest
from genai_core.errors import InvalidArgument, Unavailable
from genai_retrieval.downstream import Client, Downstream

SRC = Path(__file__).resolve().parents[1] / "src" / "genai_retrieval"
DOMAIN = ["answer.py", "fusion.py", "ingestion.py", "resources.py", "search.py", "service.py"]


def _failure(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class _Stub:
    """Stands in for a generated stub: ``Unary`` answers or fails when awaited, ``Stream`` fails mid-stream."""

    def __init__(self, failure: grpc.aio.AioRpcError | None) -> None:
        self._failure = failure

    def Unary(self, request):  # noqa: N802 - named like an RPC
        async def call():
            if self._failure:
                raise self._failure
            return f"reply to {request}"

        return call()

    def Stream(self, request):  # noqa: N802
        return _StreamCall(self._failure)


class _StreamCall:
    """A server stream: "first", then the failure (or "second" and the end); records cancel()."""

    def __init__(self, failure: grpc.aio.AioRpcError | None) -> None:
        self._failure = failure
        self.cancelled = False

    async def __aiter__(self):
        yield "first"
        if self._failure:
            raise self._failure
        yield "second"

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def test_unary_failures_become_domain_errors():
    assert await Client(_Stub(None), "embedding").Unary("hi") == "reply to hi"
    with pytest.raises(Unavailable, match="the embedding service is unavailable: down"):
        await Client(_Stub(_failure(grpc.StatusCode.UNAVAILABLE, "down")), "embedding").Unary("hi")
    with pytest.raises(InvalidArgument, match="the tokenizer service failed: bad budget"):
        await Client(_Stub(_failure(grpc.StatusCode.INVALID_ARGUMENT, "bad budget")), "tokenizer").Unary("hi")


async def test_stream_failures_become_domain_errors():
    seen = []
    with pytest.raises(Unavailable, match="the inference service is unavailable: gone"):
        async for event in Client(_Stub(_failure(grpc.StatusCode.UNAVAILABLE, "gone")), "inference").Stream("hi"):
            seen.append(event)
    assert seen == ["first"]


async def test_a_stream_the_caller_stops_reading_is_cancelled():
    stub = _Stub(None)
    call = stub.Stream("hi")
    stub.Stream = lambda request: call  # noqa: N802 - hand out this one call
    events = Client(stub, "inference").Stream("hi").__aiter__()
    assert await events.__anext__() == "first"
    await events.aclose()  # what leaving an `async for` early does once the generator is let go
    assert call.cancelled


def test_a_service_without_a_target_is_unavailable():
    with pytest.raises(Unavailable, match="GENAI_RETRIEVAL_INFERENCE_TARGET"):
        Downstream("", "", "").inference  # noqa: B018 - the property raises


@pytest.mark.parametrize("name", DOMAIN)
def test_domain_modules_do_not_import_grpc(name):
    tree = ast.parse((SRC / name).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
    assert not {m for m in imported if m == "grpc" or m.startswith("grpc.") or m.endswith("_grpc")}
