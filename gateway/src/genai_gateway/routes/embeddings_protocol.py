"""JSON shapes of the embedding routes (pydantic): OpenAI's /v1/embeddings, sparse vectors, and rerank
in the Cohere/Jina/TEI shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[int] | list[list[int]] = Field(
        ..., description="A text, a list of texts, a list of token ids, or a list of token-id lists."
    )
    model: str = Field("", description="Model id (GET the embedding service's info); empty = the default.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as base64 of little-endian float32, as OpenAI does."
    )
    dimensions: int | None = Field(None, description="Must be the model's full dimension (no Matryoshka reduction).")
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; not used.")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class SparseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(..., description="A text or a list of texts.")
    model: str = ""
    sparse_model: str = Field(
        "", description='The term analyzer: "bm25-english" (default: stemmed words) or "bm25-wordpiece" (token ids).'
    )


class SparseData(BaseModel):
    object: Literal["sparse_embedding"] = "sparse_embedding"
    index: int
    indices: list[int] = Field(..., description="Term ids, ascending (hashed stems, or WordPiece ids).")
    values: list[float] = Field(..., description="BM25 term-frequency weights (no IDF: that belongs to the index).")


class SparseResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SparseData]
    model: str
    usage: EmbeddingUsage


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    documents: list[str]
    model: str = ""
    top_n: int | None = Field(None, description="Return only the best n; unset returns every document.")
    return_documents: bool = False


class RerankDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: EmbeddingUsage
