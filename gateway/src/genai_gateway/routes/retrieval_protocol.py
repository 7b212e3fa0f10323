"""HTTP shapes of the retrieval routes (native, not OpenAI): collections, documents, search and RAG."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import INFERENCE, RETRIEVAL
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import UINT32_MAX, NonEmpty

ChunkSize = Annotated[int, Field(ge=RETRIEVAL.min_chunk_size_tokens, le=RETRIEVAL.max_chunk_size_tokens,
                                 description="tokens per chunk; unset: the collection's default")]
ChunkOverlap = Annotated[int, Field(ge=0, le=RETRIEVAL.max_chunk_size_tokens - 1,
                                    description="tokens neighbouring chunks share (less than the chunk size)")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CollectionCreate(_Strict):
    name: str = Field(pattern=RETRIEVAL.name_pattern,
                      description="1 to 63 lowercase letters, digits, '-' and '_'; unique in the tenant")
    description: str = ""
    embedding_model: str = Field("", description="empty: the service default (all-minilm-l6-v2)")
    dimensions: int | None = Field(None, ge=1, le=UINT32_MAX, description="unset: the embedding model's")
    distance: Literal["cosine", "dot", "euclid", "manhattan"] = "cosine"
    sparse: bool = Field(True, description="store sparse vectors too (sparse and hybrid search need them)")
    chunk_size_tokens: ChunkSize | None = None
    chunk_overlap_tokens: ChunkOverlap | None = None
    labels: dict[str, str] = {}


class DocumentIn(_Strict):
    id: str = Field("", description="unique in the collection; re-ingesting an id replaces the document")
    text: str
    content_type: str = Field("text/plain", description="text/plain, text/markdown or text/html")
    title: str = ""
    source_uri: str = ""
    metadata: dict[str, Any] = {}


class DocumentsIn(_Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=RETRIEVAL.max_documents_per_request)
    chunk_size_tokens: ChunkSize | None = None
    chunk_overlap_tokens: ChunkOverlap | None = None


class SearchParams(_Strict):
    top_k: int | None = Field(None, ge=1, le=RETRIEVAL.max_top_k)
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(None, description="unset: hybrid when sparse is on")
    fusion: Literal["rrf", "dbsf"] | None = Field(None, description="hybrid fusion; unset: the service default (dbsf)")
    filter: dict[str, Any] | None = Field(
        None,
        description='Qdrant-shaped {"must": [{"field": {"key": "lang", "equals": {"string_value": "en"}}}], ...}, '
        'or the shorthand {"lang": "en", "tags": ["a", "b"]} (equals / any of, all must hold)',
    )
    score_threshold: float | None = None
    candidate_count: int | None = Field(None, ge=1, le=RETRIEVAL.max_candidate_count)
    rerank: bool = False
    rerank_model: str = ""
    rerank_fuse: bool = Field(False, description="fuse the reranker's scores with the first stage's (the search's "
                                                 "fusion) instead of ordering by the reranker alone")


class SearchIn(SearchParams):
    query: NonEmpty


class AnswerIn(SearchParams):
    collection: NonEmpty
    question: NonEmpty
    model: str = ""
    max_tokens: int | None = Field(None, ge=1, le=INFERENCE.max_new_tokens)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    system_prompt: str = ""
    context_token_budget: int | None = Field(None, ge=1, le=UINT32_MAX)
    stream: bool = False


class DocumentsDelete(_Strict):
    ids: list[NonEmpty] | None = Field(None, min_length=1)
    filter: dict[str, Any] | None = None
