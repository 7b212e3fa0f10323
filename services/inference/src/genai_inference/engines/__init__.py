"""Engines by name: each entry builds a ``Backend`` from the settings, importing its library lazily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genai_inference.metrics import InferenceMetrics
from genai_inference.settings import EngineName, InferenceSettings


@dataclass(frozen=True)
class Built:
    backend: Any  # genai_inference.engines.base.Backend
    tokenizer: Any  # a transformers fast tokenizer for prompts and chat templates


def _local(make_engine: Callable[[Any, InferenceSettings], Any]) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        from transformers import AutoTokenizer

        from genai_inference.constraints import ConstraintCompiler
        from genai_inference.models import resolve
        from genai_inference.scheduler import Scheduler

        source = resolve(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
        engine = make_engine(source, settings)
        compiler = ConstraintCompiler(tokenizer, engine.info.vocab_size, eos_token_ids=engine.eos_token_ids)
        scheduler = Scheduler(
            engine, tokenizer, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
            compiler=compiler, metrics=metrics,
        )
        return Built(scheduler, tokenizer)

    return build


def _torch(source, settings: InferenceSettings):
    from genai_inference.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=settings.threads)


def _onnx(source, settings: InferenceSettings):
    from genai_inference.engines.onnx_engine import OnnxEngine

    return OnnxEngine(source, settings.cache_dir, precision=settings.onnx_precision, threads=settings.threads)


def _remote(module: str, cls: str) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        import importlib

        from transformers import AutoTokenizer

        from genai_inference.models import resolve

        # Prompts and chat templates are rendered here, so the remote model must match the local one.
        source = resolve(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
        backend_cls = getattr(importlib.import_module(module), cls)
        return Built(backend_cls(settings, source, tokenizer), tokenizer)

    return build


ENGINES: dict[EngineName, Callable[[InferenceSettings, InferenceMetrics], Built]] = {
    EngineName.TORCH: _local(_torch),
    EngineName.ONNXRUNTIME: _local(_onnx),
    EngineName.LLAMACPP: _remote("genai_inference.engines.llamacpp_engine", "LlamaCppBackend"),
    EngineName.TGI: _remote("genai_inference.engines.tgi_engine", "TgiBackend"),
    EngineName.OPENAI: _remote("genai_inference.engines.openai_engine", "OpenAIBackend"),
}


def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
    return ENGINES[settings.engine](settings, metrics)
