"""Composition root: settings once, build the engine and the domain, serve until SIGTERM."""

from __future__ import annotations

import os

# Before torch/onnxruntime load: idle OpenMP threads sleep instead of spinning. With spinning, two
# compute threads on a machine shared with the other services collapsed to a quarter of their speed
# (benchmarks/results/inference.md); on a dedicated machine set OMP_WAIT_POLICY=ACTIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import ctypes  # noqa: E402

# glibc raises its mmap threshold after each large free, and from then on keeps prompt-sized buffers (logits,
# attention scratch) in the heap for good: resident memory only ever grows. A fixed threshold hands them back.
with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6").mallopt(-3, 256 << 10)  # M_MMAP_THRESHOLD = 256 KiB

import asyncio  # noqa: E402

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.metrics import GrpcMetrics  # noqa: E402
from genai_core.server import run_service  # noqa: E402

from genai_inference import backends  # noqa: E402
from genai_inference.engines.base import Backend  # noqa: E402
from genai_inference.generation import Inference  # noqa: E402
from genai_inference.metrics import InferenceMetrics  # noqa: E402
from genai_inference.servicer import service_spec  # noqa: E402
from genai_inference.settings import Settings  # noqa: E402


def main() -> None:
    settings = Settings.from_env(os.environ)
    grpc_metrics = GrpcMetrics("inference")
    metrics = InferenceMetrics(grpc_metrics.registry)
    inference: Deferred[Inference] = Deferred("inference engine")

    backend: Backend | None = None

    async def ready() -> None:
        nonlocal backend
        built = await asyncio.to_thread(backends.build, settings.inference, metrics)
        backend = built.backend
        await backend.start()
        inference.set(Inference(backend, built.tokenizer, settings.inference))

    async def close() -> None:  # after SIGTERM drained the calls: stop the worker, free the model
        if backend is not None:
            await backend.close()

    asyncio.run(
        run_service(settings.server, "inference", [service_spec(inference)], ready=ready, close=close,
                    metrics=grpc_metrics)
    )


if __name__ == "__main__":
    main()
