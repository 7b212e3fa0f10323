"""Composition root: settings once, build the engine and the domain, serve until SIGTERM."""

from __future__ import annotations

import os

# Before torch/onnxruntime load: idle OpenMP threads sleep instead of spinning. With spinning, two
# compute threads on a machine shared with the other services collapsed to a quarter of their speed
# (benchmarks/results/inference.md); on a dedicated machine set OMP_WAIT_POLICY=ACTIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import asyncio  # noqa: E402

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.errors import Unavailable  # noqa: E402
from genai_core.metrics import GrpcMetrics  # noqa: E402
from genai_core.server import run_service  # noqa: E402

from genai_inference import engines  # noqa: E402
from genai_inference.metrics import InferenceMetrics  # noqa: E402
from genai_inference.registry import ModelRegistry  # noqa: E402
from genai_inference.service import Inference  # noqa: E402
from genai_inference.servicer import service_spec  # noqa: E402
from genai_inference.settings import Settings  # noqa: E402


def main() -> None:
    settings = Settings.from_env(os.environ)
    grpc_metrics = GrpcMetrics("inference")
    metrics = InferenceMetrics(grpc_metrics.registry)
    s = settings.inference
    models: Deferred[ModelRegistry] = Deferred("inference engine")

    async def ready() -> None:
        built = await asyncio.to_thread(engines.build, s, metrics)
        await built.backend.start()
        default = Inference(built.backend, built.tokenizer, s)
        models.set(ModelRegistry.around(default, metrics))

    async def close() -> None:
        try:
            registry = models.get()
        except Unavailable:  # never loaded: nothing to close
            return
        await registry.close()

    asyncio.run(
        run_service(settings.server, "inference", [service_spec(models)], ready=ready, metrics=grpc_metrics,
                    close=close)
    )


if __name__ == "__main__":
    main()
