"""Clients of the embedding, inference and tokenizer services, with their errors named by service.

The domain calls ``downstream.embedding.Embed(request)`` as it would a stub; a failed call raises a domain
error (``Unavailable``, ``InvalidArgument``, ...) that names the service, never ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from genai.embedding.v1 import embedding_service_pb2_grpc
from genai.inference.v1 import inference_service_pb2_grpc
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc
from genai_core.channels import create_channel
from genai_core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from genai_core.status import field_violations
from opentelemetry.sdk.trace import TracerProvider


class _Call:
    """A started RPC: await it (unary) or iterate it (server streaming); its failures become domain errors."""

    def __init__(self, call: Any, service: str) -> None:
        self._call = call
        self._service = service

    def __await__(self):
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._call
        except grpc.aio.AioRpcError as exc:
            raise translate(self._service, exc) from None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for message in self._call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise translate(self._service, exc) from None
        finally:
            # A caller that stops reading (at the stream's `complete`) must cancel: gRPC keeps an unread
            # stream open, and its client span with it, until the channel closes.
            self._call.cancel()


class Client:
    """A service's stub whose RPCs raise domain errors that name the service."""

    def __init__(self, stub: Any, service: str) -> None:
        self._stub = stub
        self._service = service

    def __getattr__(self, rpc: str) -> Callable[..., _Call]:
        method = getattr(self._stub, rpc)
        return lambda *args, **kwargs: _Call(method(*args, **kwargs), self._service)


class Downstream:
    """One traced channel per downstream service; an empty target means the service is not deployed."""

    def __init__(
        self, embedding: str, inference: str, tokenizer: str, *, timeout: float = 120.0,
        tracer_provider: TracerProvider | None = None, channels: dict[str, grpc.aio.Channel] | None = None,
    ) -> None:
        self.targets = {"embedding": embedding, "inference": inference, "tokenizer": tokenizer}
        self._owned = {
            name: create_channel(target, default_timeout=timeout, tracer_provider=tracer_provider)
            for name, target in self.targets.items() if target and name not in (channels or {})
        }
        self._channels = {**self._owned, **(channels or {})}  # given channels stay the caller's to close

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            raise Unavailable(f"the {name} service is not configured; set GENAI_RETRIEVAL_{name.upper()}_TARGET",
                              reason="DOWNSTREAM_UNAVAILABLE", resource_type="service", resource_name=name)
        return self._channels[name]

    @property
    def embedding(self) -> Client:
        """The embedding service: ``EmbeddingServiceStub``'s RPCs."""
        return Client(embedding_service_pb2_grpc.EmbeddingServiceStub(self._channel("embedding")), "embedding")

    @property
    def inference(self) -> Client:
        """The inference service: ``InferenceServiceStub``'s RPCs."""
        return Client(inference_service_pb2_grpc.InferenceServiceStub(self._channel("inference")), "inference")

    @property
    def tokenizer(self) -> Client:
        """The tokenizer service: ``TokenizerServiceStub``'s RPCs."""
        return Client(tokenizer_service_pb2_grpc.TokenizerServiceStub(self._channel("tokenizer")), "tokenizer")

    async def close(self) -> None:
        for channel in self._owned.values():
            await channel.close()


def translate(service: str, exc: grpc.aio.AioRpcError) -> Exception:
    """A downstream failure as a domain error that names the service."""
    code, details = exc.code(), exc.details() or ""
    message = f"the {service} service failed: {details}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"the {service} service is unavailable: {details}", reason="DOWNSTREAM_UNAVAILABLE",
                           resource_type="service", resource_name=service)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"the {service} service did not answer in time", resource_name=service)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = [FieldViolation(f"{service}.{f}", d) for f, d in field_violations(exc)]
        return InvalidArgument(message, violations)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(message, resource_type="service", resource_name=service)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(message)
    return FailedPrecondition(message, reason="DOWNSTREAM_ERROR", resource_type="service", resource_name=service)
