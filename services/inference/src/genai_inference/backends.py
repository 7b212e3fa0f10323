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
from typing import TYPE_CHECKING, Any

from genai_inference.engines.base import Backend, KVEngine
from genai_inference.metrics import InferenceMetrics
from genai_inference.models import ModelSource
from genai_inference.settings import EngineName, InferenceSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Built:
    backend: Backend
    tokenizer: PreTrainedTokenizerBase  # a fast tokenizer for prompts and chat templates


def _tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.directory))


def _scheduled(make_engine: Callable[[ModelSource, InferenceSettings], KVEngine]
               ) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        from genai_inference.constraints import ConstraintCompiler
        from genai_inference.models import resolve
        from genai_inference.scheduler import Scheduler

        source = resolve(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = _tokenizer(source)
        engine = make_engine(source, settings)
        compiler = ConstraintCompiler(tokenizer, engine.info.vocab_size, eos_token_ids=engine.eos_token_ids)
        scheduler = Scheduler(
            engine, tokenizer, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
            compiler=compiler, metrics=metrics,
        )
        return Built(scheduler, tokenizer)

    return build


def _torch(source: ModelSource, settings: InferenceSettings) -> KVEngine:
    from genai_inference.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=settings.threads)


def _onnx(source: ModelSource, settings: InferenceSettings) -> KVEngine:
    from genai_inference.engines.onnx_engine import OnnxEngine

    return OnnxEngine(source, settings.cache_dir, precision=settings.onnx_precision, threads=settings.threads)


def _standalone(module: str, cls: str) -> Callable[[InferenceSettings, InferenceMetrics], Built]:
    def build(settings: InferenceSettings, metrics: InferenceMetrics) -> Built:
        from genai_inference.models import resolve

        # Prompts and chat templates are rendered here, so a remote model must match the local one.
        source = resolve(settings.model, settings.model_path, settings.cache_dir)
        tokenizer = _tokenizer(source)
        backend_cls = getattr(importlib.import_module(module), cls)
        return Built(backend_cls(settings, source, tokenizer), tokenizer)

    return build


ENGINES: dict[EngineName, Callable[[InferenceSettings, InferenceMetrics], Built]] = {
    EngineName.TORCH: _scheduled(_torch),
    EngineName.ONNXRUNTIME: _scheduled(_onnx),
    EngineName.LLAMACPP: _standalone("genai_inference.engines.llamacpp_engine", "LlamaCppBackend"),
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
