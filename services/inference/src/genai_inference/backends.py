"""Engines by name: each entry builds a ``Backend`` from the settings, importing its library lazily.

Two kinds of entries: a local ``KVEngine`` is wrapped in the continuous-batching ``Scheduler``
(``_scheduled``); an engine that runs requests itself is the ``Backend`` (``_standalone``: llama.cpp and
the remote TGI/OpenAI servers). Either way prompts are tokenized and chats rendered here with the model's
own tokenizer, so behaviour stays the same across engines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genai_inference.engines.base import Backend, KVEngine
from genai_inference.metrics import InferenceMetrics
from genai_inference.models import ModelSource, gguf_source, load_tokenizer, resolve
from genai_inference.settings import EngineName, InferenceSettings

if TYPE_CHECKING:
    from genai_inference.tokenization import Tokenizer


@dataclass(frozen=True)
class Built:
    backend: Backend
    tokenizer: Tokenizer  # encodes prompts, decodes tokens, renders chat templates


Source = Callable[[str, str, Path], ModelSource]  # (model id, model path, cache dir) -> the model's files


def _scheduled(make_engine: Callable[[ModelSource, InferenceSettings], KVEngine], source: Source = resolve
               ) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        from genai_inference.constraints import ConstraintCompiler
        from genai_inference.prefix_cache import PrefixCache
        from genai_inference.scheduler import Scheduler

        model = source(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = load_tokenizer(model.directory)
        engine = make_engine(model, settings)
        compiler = ConstraintCompiler(tokenizer, engine.info.vocab_size, eos_token_ids=engine.eos_token_ids)
        cache = PrefixCache(settings.prefix_cache_mb << 20) if settings.prefix_cache_mb else None
        scheduler = Scheduler(
            engine, tokenizer, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
            compiler=compiler, metrics=metrics, prefix_cache=cache,
        )
        return Built(scheduler, tokenizer)

    return build


def _torch(source: ModelSource, settings: InferenceSettings) -> KVEngine:
    from genai_inference.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=settings.threads)


def _onnx(source: ModelSource, settings: InferenceSettings) -> KVEngine:
    from genai_inference.engines.onnx_engine import OnnxEngine

    return OnnxEngine(source, settings.cache_dir, precision=settings.onnx_precision, threads=settings.threads)


def _gguf(source: ModelSource, settings: InferenceSettings) -> KVEngine:
    from genai_inference.engines.gguf_engine import GgufEngine

    return GgufEngine(source, settings.cache_dir, threads=settings.threads, max_batch_size=settings.max_batch_size,
                      accuracy_level=settings.gguf_accuracy_level, spin=settings.gguf_spin)


def _standalone(module: str, cls: str, source: Source = resolve) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        # Prompts and chat templates are rendered here, so a remote model must match the local one.
        model = source(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = load_tokenizer(model.directory)
        backend_cls = getattr(importlib.import_module(module), cls)
        return Built(backend_cls(settings, model, tokenizer), tokenizer)

    return build


# OMP_WAIT_POLICY per engine, set by the composition root before the engine's libraries load. torch's idle
# OpenMP threads spin by default, and two compute threads on a machine shared with the other services then
# collapsed to a quarter of their speed: they sleep (PASSIVE). llama.cpp is the opposite: its threads meet at
# an OpenMP region per token, and sleeping workers cut 2-thread decode from ~150 to ~45 tok/s (measured, see
# README): it keeps libgomp's default (spin briefly, then sleep). onnxruntime uses its own thread pool.
OPENMP_WAIT_POLICY: dict[EngineName, str] = {EngineName.TORCH: "PASSIVE", EngineName.ONNXRUNTIME: "PASSIVE"}

ENGINES: dict[EngineName, Callable[[InferenceSettings, InferenceMetrics], Built]] = {
    EngineName.TORCH: _scheduled(_torch),
    EngineName.ONNXRUNTIME: _scheduled(_onnx),
    EngineName.ONNXRUNTIME_GGUF: _scheduled(_gguf, gguf_source),
    EngineName.LLAMACPP: _standalone("genai_inference.engines.llamacpp_engine", "LlamaCppBackend", gguf_source),
    EngineName.TGI: _standalone("genai_inference.engines.tgi_engine", "TgiBackend"),
    EngineName.OPENAI: _standalone("genai_inference.engines.openai_engine", "OpenAIBackend"),
}


def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
    return ENGINES[settings.engine](settings, metrics)


def build_scheduled(make_engine: Callable[[ModelSource, InferenceSettings], KVEngine], settings: InferenceSettings,
                    metrics: InferenceMetrics | None) -> Built:
    """A local engine of the caller's making behind its own scheduler, for ``settings``' model (the registry's
    prompt/prefix-tuning models run this way on the default model's weights)."""
    return _scheduled(make_engine)(settings, metrics)  # type: ignore[arg-type]
