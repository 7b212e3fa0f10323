"""Models served beside the default one, loaded at run time (LoadModel) from the fine-tune service's artifacts:

* an encoder (such as a BERT pretrained by ``pretrain_encoder``): its mean-pooled last hidden states are the
  embeddings, and Rerank with it is the bi-encoder cosine, as for the default model;
* a cross-encoder (a sequence classifier with one label, such as the fine-tune service's ``reranker`` trains):
  Rerank scores each (query, passage) pair jointly; Embed with it is refused, it has no embeddings.

Which one a directory holds is read from its ``config.json`` (``*ForSequenceClassification`` is a
cross-encoder). Each model runs on torch, one forward at a time, in batches of ``batch_size`` inputs.
"""

from __future__ import annotations

import enum
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from genai_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

from genai_embedding.pooling import l2_normalize, mean_pool

_ARTIFACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class LoadedKind(enum.Enum):
    ENCODER = "encoder"
    CROSS_ENCODER = "cross_encoder"


@dataclass(frozen=True)
class LoadedInfo:
    id: str
    kind: LoadedKind
    path: str
    dimensions: int  # 0 for a cross-encoder
    max_input_tokens: int
    revision: str


def kind_of(directory: Path) -> LoadedKind:
    config = json.loads((directory / "config.json").read_text())
    classifier = any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    return LoadedKind.CROSS_ENCODER if classifier else LoadedKind.ENCODER


class LoadedModel:
    def __init__(self, model_id: str, directory: Path, *, threads: int, max_input_tokens: int, batch_size: int) -> None:
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        from genai_embedding.model import _sha256

        torch.set_num_threads(threads)
        self._torch = torch
        self.kind = kind_of(directory)
        cls = AutoModelForSequenceClassification if self.kind is LoadedKind.CROSS_ENCODER else AutoModel
        self.model = cls.from_pretrained(str(directory), dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        # The tokenizer's model_max_length is the length the model was trained on (a reranker trained on 128 tokens
        # saves 128): longer inputs are cut there, as in training. Tokenizers without one say ~1e30.
        limit = int(min(max_input_tokens, getattr(self.model.config, "max_position_embeddings", max_input_tokens),
                        self.tokenizer.model_max_length))
        weights = directory / "model.safetensors"
        self.info = LoadedInfo(model_id, self.kind, str(directory),
                               0 if self.kind is LoadedKind.CROSS_ENCODER else int(self.model.config.hidden_size),
                               limit, _sha256(weights) if weights.exists() else "")
        self._batch = batch_size
        self._lock = threading.Lock()

    def _encode(self, *texts: list[str], truncate: bool) -> dict:
        encoded = self.tokenizer(*texts, padding=True, truncation=truncate, max_length=self.info.max_input_tokens,
                                 return_tensors="pt")
        if not truncate and encoded["input_ids"].shape[1] > self.info.max_input_tokens:
            raise InvalidArgument.for_field("texts", f"an input is longer than the model's {self.info.max_input_tokens} "
                                            "tokens; shorten it or ask for truncation")
        return encoded

    def embed(self, texts: list[str], *, normalize: bool, truncate: bool) -> tuple[np.ndarray, list[int]]:
        """[N, H] mean-pooled vectors and each input's token count; blocking."""
        if self.kind is LoadedKind.CROSS_ENCODER:
            raise FailedPrecondition(f"'{self.info.id}' is a cross-encoder (a reranker): it scores pairs with Rerank "
                                     "and has no embeddings", reason="WRONG_MODEL_KIND", resource_type="model",
                                     resource_name=self.info.id)
        vectors, counts = [], []
        with self._lock, self._torch.no_grad():
            for i in range(0, len(texts), self._batch):
                encoded = self._encode(texts[i:i + self._batch], truncate=truncate)
                states = self.model(**encoded).last_hidden_state.numpy()
                mask = encoded["attention_mask"].numpy()
                vectors.append(mean_pool(states, mask))
                counts.extend(int(n) for n in mask.sum(axis=1))
        out = np.concatenate(vectors).astype(np.float32)
        return (l2_normalize(out) if normalize else out), counts

    def score(self, query: str, passages: list[str], *, truncate: bool) -> tuple[np.ndarray, int]:
        """Raw relevance logits of each passage for the query, and the tokens read; blocking."""
        if self.kind is LoadedKind.ENCODER:
            vectors, counts = self.embed([query, *passages], normalize=True, truncate=truncate)
            return vectors[1:] @ vectors[0], sum(counts)
        scores, tokens = [], 0
        with self._lock, self._torch.no_grad():
            for i in range(0, len(passages), self._batch):
                chunk = passages[i:i + self._batch]
                encoded = self._encode([query] * len(chunk), chunk, truncate=truncate)
                scores.append(self.model(**encoded).logits[:, 0].numpy())
                tokens += int(encoded["attention_mask"].sum())
        return np.concatenate(scores), tokens


class LoadedModels:
    """The models loaded at run time, by id."""

    def __init__(self, artifacts_dir: Path, *, max_models: int, threads: int, max_input_tokens: int,
                 batch_size: int) -> None:
        self._artifacts_dir = artifacts_dir
        self._max_models = max_models
        self._options = {"threads": threads, "max_input_tokens": max_input_tokens, "batch_size": batch_size}
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._models

    def get(self, model_id: str) -> LoadedModel:
        found = self._models.get(model_id)
        if found is None:
            raise NotFound(f"model '{model_id}' is not loaded", resource_type="model", resource_name=model_id)
        return found

    def ids(self) -> list[str]:
        return sorted(self._models)

    def _location(self, artifact_id: str) -> Path:
        if not _ARTIFACT_ID.match(artifact_id):
            raise InvalidArgument.for_field("artifact_id", f"'{artifact_id}' is not an artifact id")
        location = self._artifacts_dir / artifact_id
        if not (location / "config.json").is_file():
            raise NotFound(f"artifact '{artifact_id}' is not a model directory under {self._artifacts_dir} "
                           "(GENAI_EMBEDDING_ARTIFACTS_DIR must name the fine-tune service's artifacts directory)",
                           resource_type="artifact", resource_name=artifact_id)
        return location

    def load(self, model_id: str, artifact_id: str, taken: set[str]) -> LoadedInfo:
        """Load an artifact as ``model_id``; blocking. ``taken``: ids served otherwise (the default model)."""
        if not model_id:
            raise InvalidArgument.for_field("model_id", "name the model, such as ft:scratch:<suffix>:<job>")
        if model_id in self._models or model_id in taken:
            raise AlreadyExists(f"model '{model_id}' is served already; unload it first", resource_type="model",
                                resource_name=model_id)
        if len(self._models) >= self._max_models:
            raise ResourceExhausted(f"{self._max_models} models are loaded beside the default one; unload one first "
                                    "(GENAI_EMBEDDING_MAX_LOADED_MODELS)")
        model = LoadedModel(model_id, self._location(artifact_id), **self._options)
        with self._lock:
            self._models[model_id] = model
        return model.info

    def unload(self, model_id: str) -> LoadedInfo:
        with self._lock:
            model = self._models.pop(model_id, None)
        if model is None:
            raise NotFound(f"model '{model_id}' was not loaded with LoadModel", resource_type="model",
                           resource_name=model_id)
        return model.info
