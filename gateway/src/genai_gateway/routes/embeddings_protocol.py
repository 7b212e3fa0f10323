"""JSON shapes of the embedding routes (pydantic): OpenAI's /v1/embeddings, sparse vectors, and rerank
in the Cohere/Jina/TEI shape."""

from __future__ import annotations

from typing import Annotated, Literal

from genai_core.limits import EMBEDDING
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import UINT32_MAX, TokenId

_MAX = EMBEDDING.max_request_inputs
Text = Annotated[str, Field(min_length=1)]
Texts = Text | Annotated[list[Text], Field(min_length=1, max_length=_MAX)]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    input: (
        Texts
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=_MAX)]
    ) = Field(..., description="A text, a list of texts, a list of token ids, or a list of token-id lists.")
    model: str = Field("", description="Model id (GET the embedding service's info); empty = the default.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as base64 of little-endian float32, as OpenAI does."
    )
    dimensions: int | None = Field(
        None, ge=1, le=UINT32_MAX, description="Must be the model's full dimension (no Matryoshka reduction)."
    )
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
    model_config = ConfigDict(extra="forbid", strict=True)

    input: Texts = Field(..., description="A text or a list of texts.")
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
    model_config = ConfigDict(extra="forbid", strict=True)

    query: Text
    documents: list[Text] = Field(..., min_length=1, max_length=_MAX)
    model: str = ""
    top_n: int | None = Field(None, ge=1, le=_MAX, description="Return only the best n; unset returns every document.")
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
