"""Engines by name: each entry builds an ``Engine`` from the settings, importing its library lazily.

An engine turns a padded batch of token ids into mean-pooled, unnormalised sentence vectors::

    forward(input_ids [B, S] int64, attention_mask [B, S] int64) -> [B, H] float32

Normalisation is a request option, so it happens outside (``genai_embedding.pooling``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from genai_embedding.model import ModelSource
from genai_embedding.settings import EmbeddingSettings, EngineName


class Engine(Protocol):
    name: str  # what GetInfo reports, such as "onnxruntime" or "onnxruntime-int8"
    version: str

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def _onnx(source: ModelSource, settings: EmbeddingSettings) -> Engine:
    from genai_embedding.engines.onnx_engine import OnnxEngine

    return OnnxEngine(source, settings.cache_dir, precision=settings.precision, threads=settings.threads)


def _torch(source: ModelSource, settings: EmbeddingSettings) -> Engine:
    from genai_embedding.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=settings.threads)


ENGINES: dict[EngineName, Callable[[ModelSource, EmbeddingSettings], Engine]] = {
    EngineName.ONNXRUNTIME: _onnx,
    EngineName.TORCH: _torch,
}


def build(source: ModelSource, settings: EmbeddingSettings) -> Engine:
    return ENGINES[settings.engine](source, settings)
