"""Composition root: settings once, build the engine and the domain, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os

from genai_core.deferred import Deferred
from genai_core.metrics import GrpcMetrics
from genai_core.server import run_service

from genai_inference import backends
from genai_inference.engines.base import Backend
from genai_inference.generation import Inference
from genai_inference.metrics import InferenceMetrics
from genai_inference.registry import ModelRegistry
from genai_inference.servicer import service_spec
from genai_inference.settings import Settings

MMAP_THRESHOLD = 6 << 20  # bytes, glibc's mmap and trim thresholds: see _process_tuning


def _process_tuning(settings: Settings) -> None:
    """What must be decided before an engine's libraries load (in ``ready``)."""
    # OpenMP reads its wait policy once, when its runtime loads: per engine (see backends.OPENMP_WAIT_POLICY).
    policy = backends.OPENMP_WAIT_POLICY.get(settings.inference.engine)
    if policy:
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    # glibc raises its mmap threshold after each large free, and from then on keeps prompt-sized buffers in
    # the heap for good: resident memory only ever grows. Fixed thresholds bound that. They sit above
    # onnxruntime's per-layer attention scratch ([rows, heads, tokens, KV capacity] float32; 4.7 MB for a
    # 16-row decode step at the full 8,192-position capacity), which comes and goes 30 times a forward: at
    # 256 KiB (the setting before) each was a fresh mapping faulted in page by page, and a 16-stream step took
    # 33 ms instead of 25-27 (make bench-inference). 6 MiB keeps the prompt-logprob logits (32 x 49,152 float32
    # = 6.3 MB) mapped and handed back: at 8 or 24 MiB the peak RSS grew by 3-5 MiB.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, MMAP_THRESHOLD)  # M_TRIM_THRESHOLD


def main() -> None:
    settings = Settings.from_env(os.environ)
    _process_tuning(settings)
    grpc_metrics = GrpcMetrics("inference")
    metrics = InferenceMetrics(grpc_metrics.registry)
    models: Deferred[ModelRegistry] = Deferred("inference engine")

    backend: Backend | None = None

    async def ready() -> None:
        nonlocal backend
        built = await asyncio.to_thread(backends.build, settings.inference, metrics)
        backend = built.backend
        await backend.start()
        # The default model, and the models LoadModel adds beside it (fine-tuned weights, prompt/prefix adapters).
        models.set(ModelRegistry.around(Inference(backend, built.tokenizer, settings.inference), metrics))

    async def close() -> None:  # after SIGTERM drained the calls: stop the workers, free the models
        if backend is not None:
            await models.get().close()
            await backend.close()

    asyncio.run(
        run_service(settings.server, "inference", [service_spec(models)], ready=ready, close=close,
                    metrics=grpc_metrics)
    )


if __name__ == "__main__":
    main()
