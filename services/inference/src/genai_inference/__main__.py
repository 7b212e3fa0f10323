"""Composition root: settings once, build the engine and the domain, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os

from genai_core.deferred import Deferred
from genai_core.metrics import GrpcMetrics
from genai_core.server import run_service

from genai_inference import engines
from genai_inference.metrics import InferenceMetrics
from genai_inference.service import Inference
from genai_inference.servicer import service_spec
from genai_inference.settings import Settings


def main() -> None:
    settings = Settings.from_env(os.environ)
    grpc_metrics = GrpcMetrics("inference")
    metrics = InferenceMetrics(grpc_metrics.registry)
    inference: Deferred[Inference] = Deferred("inference engine")

    async def ready() -> None:
        built = await asyncio.to_thread(engines.build, settings.inference, metrics)
        await built.backend.start()
        inference.set(Inference(built.backend, built.tokenizer, settings.inference))

    asyncio.run(
        run_service(settings.server, "inference", [service_spec(inference)], ready=ready, metrics=grpc_metrics)
    )


if __name__ == "__main__":
    main()
