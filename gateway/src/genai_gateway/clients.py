"""One channel and typed stub per configured backend, plus their readiness."""

from __future__ import annotations

import asyncio

import grpc
from genai.embedding.v1 import embedding_service_pb2_grpc
from genai.inference.v1 import inference_service_pb2_grpc
from genai.retrieval.v1 import retrieval_service_pb2_grpc
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc
from genai_core.channels import create_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_gateway.errors import GatewayError

# Backend name -> the full proto service name its health check reports on.
SERVICE_NAMES = {
    "tokenizer": "genai.tokenizer.v1.TokenizerService",
    "inference": "genai.inference.v1.InferenceService",
    "embedding": "genai.embedding.v1.EmbeddingService",
    "retrieval": "genai.retrieval.v1.RetrievalService",
    "agent": "genai.agent.v1.AgentService",
    "evaluation": "genai.evaluation.v1.EvaluationService",
    "finetune": "genai.finetune.v1.FinetuneService",
}


class Backends:
    """Owns the gRPC channels; routes get typed stubs from it."""

    def __init__(
        self, targets: dict[str, str], *, timeout: float, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.targets = dict(targets)
        self._channels = {
            name: create_channel(target, default_timeout=timeout, tracer_provider=tracer_provider)
            for name, target in targets.items()
        }

    def channel(self, name: str) -> grpc.aio.Channel:
        channel = self._channels.get(name)
        if channel is None:
            raise GatewayError(
                503,
                f"the {name} service is not configured in this gateway; set GENAI_GATEWAY_{name.upper()}_TARGET",
                "service_unavailable_error",
                "backend_not_configured",
            )
        return channel

    @property
    def tokenizer(self) -> tokenizer_service_pb2_grpc.TokenizerServiceStub:
        return tokenizer_service_pb2_grpc.TokenizerServiceStub(self.channel("tokenizer"))

    @property
    def inference(self) -> inference_service_pb2_grpc.InferenceServiceStub:
        return inference_service_pb2_grpc.InferenceServiceStub(self.channel("inference"))

    @property
    def embedding(self) -> embedding_service_pb2_grpc.EmbeddingServiceStub:
        return embedding_service_pb2_grpc.EmbeddingServiceStub(self.channel("embedding"))

    @property
    def retrieval(self) -> retrieval_service_pb2_grpc.RetrievalServiceStub:
        return retrieval_service_pb2_grpc.RetrievalServiceStub(self.channel("retrieval"))

    async def _status(self, name: str) -> str:
        stub = health_pb2_grpc.HealthStub(self._channels[name])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name]), timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def readiness(self) -> dict[str, str]:
        """Health status name of each configured backend (SERVING when ready)."""
        names = list(self._channels)
        statuses = await asyncio.gather(*(self._status(n) for n in names))
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))
