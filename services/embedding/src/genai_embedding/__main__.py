"""Composition root: settings once, load and warm the model, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os

from genai_core.deferred import Deferred
from genai_core.metrics import GrpcMetrics
from genai_core.server import run_service

from genai_embedding.embedder import Embedder
from genai_embedding.metrics import EmbeddingMetrics
from genai_embedding.servicer import service_spec
from genai_embedding.settings import Settings


def main() -> None:
    settings = Settings.from_env(os.environ)
    grpc_metrics = GrpcMetrics("embedding")
    metrics = EmbeddingMetrics(grpc_metrics.registry)
    embedder: Deferred[Embedder] = Deferred("embedding model")

    async def ready() -> None:
        loaded = await asyncio.to_thread(Embedder.load, settings.embedding, metrics)
        await loaded.warmup()
        embedder.set(loaded)

    spec = service_spec(embedder, settings.server.max_message_bytes)
    asyncio.run(run_service(settings.server, "embedding", [spec], ready=ready, metrics=grpc_metrics))


if __name__ == "__main__":
    main()
