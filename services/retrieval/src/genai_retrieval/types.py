"""The retrieval domain's values: frozen dataclasses and enums, no protobuf.

``convert.py`` turns the API's messages into these and back; the pipelines (``catalog``, ``documents``,
``ingestion``, ``search``, ``answer``) take and return only these; the ports (``ports.py``) speak them too.
An optional request field is ``None`` here when the caller left it unset, and the pipeline that uses it
picks the default.

    >>> Chunking(size=200, overlap=32, splitter=Splitter.MARKDOWN).record()
    {'chunk_size': 200, 'chunk_overlap': 32, 'splitter': 'markdown'}
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

# ------------------------------------------------------------------------------------------ collections


class Distance(enum.Enum):
    """How dense vectors are compared; the value is what the store and collection records keep."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"
    MANHATTAN = "manhattan"


class Splitter(enum.Enum):
    """How text is cut into chunks. Markdown splits on headings first; the others split text by
    paragraphs, sentences and words down to the token budget (semantic-text-splitter's levels)."""

    TOKEN = "token"
    RECURSIVE = "recursive"
    SENTENCE = "sentence"
    MARKDOWN = "markdown"


@dataclass(frozen=True)
class VectorConfig:
    """The dense vectors a new collection asks for; ``None``: the embedding model's size / cosine."""

    dimensions: int | None = None
    distance: Distance | None = None


@dataclass(frozen=True)
class ChunkingOptions:
    """What a request asks of chunking; ``None`` fields fall back to the collection's (or the service's)."""

    size: int | None = None
    overlap: int | None = None
    splitter: Splitter | None = None


@dataclass(frozen=True)
class Chunking:
    """Resolved chunking: chunks of at most ``size`` tokens sharing ``overlap`` tokens.
    ``splitter`` ``None`` lets the document's MIME type choose (Markdown for Markdown, else text)."""

    size: int
    overlap: int
    splitter: Splitter | None = None

    def record(self) -> dict[str, Any]:
        """As collection records and document payloads keep it (compared to tell an unchanged document)."""
        return {"chunk_size": self.size, "chunk_overlap": self.overlap,
                "splitter": self.splitter.value if self.splitter else ""}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Chunking:
        splitter = record.get("splitter", "")
        return cls(int(record["chunk_size"]), int(record["chunk_overlap"]), Splitter(splitter) if splitter else None)


@dataclass(frozen=True)
class CollectionSpec:
    """A CreateCollection request's choices; empty strings and ``None`` take the service's defaults."""

    name: str
    description: str = ""
    embedding_model: str = ""
    vector_config: VectorConfig = VectorConfig()
    sparse_enabled: bool = False
    sparse_model: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    default_chunking: ChunkingOptions = ChunkingOptions()


@dataclass(frozen=True)
class Collection:
    """A collection of one tenant: its embedding models, vector layout and default chunking."""

    tenant: str
    name: str
    embedding_model: str
    dimensions: int
    distance: Distance
    sparse_enabled: bool
    chunking: Chunking
    create_time: float  # seconds since the epoch
    update_time: float
    description: str = ""
    embedding_model_revision: str = ""
    model_dimensions: int | None = None  # the model's own size; differs from ``dimensions`` when truncated
    sparse_model: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def truncated_dimensions(self) -> int | None:
        """The size to ask the embedding service for, when the collection keeps fewer than the model gives."""
        model = self.model_dimensions if self.model_dimensions is not None else self.dimensions
        return self.dimensions if self.dimensions != model else None


@dataclass(frozen=True)
class Counts:
    documents: int
    chunks: int


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next ("" after the last)."""

    items: list[T]
    next_page_token: str = ""


@dataclass(frozen=True)
class ServiceInfo:
    """What the service offers and its limits (GetInfo)."""

    engine: str
    engine_version: str
    default_embedding_model: str
    default_sparse_model: str
    default_reranker_model: str
    default_answer_model: str
    default_chunking: Chunking
    supported_mime_types: tuple[str, ...]
    max_documents_per_request: int
    max_document_bytes: int
    max_top_k: int
    max_message_bytes: int


# -------------------------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class DocumentInput:
    """A document to ingest: ``text`` or raw ``data`` (bytes, such as a PDF); neither set is an empty document."""

    document_id: str = ""  # empty: a fresh id
    mime_type: str = ""
    text: str | None = None
    data: bytes | None = None
    title: str = ""
    source_uri: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of a text."""

    start: int
    end: int


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    document_id: str
    index: int
    text: str
    token_count: int = 0
    span: Span = Span(0, 0)
    page_number: int | None = None  # PDFs: the page the chunk starts on (1-based)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""
    source_uri: str = ""


@dataclass(frozen=True)
class Document:
    document_id: str
    title: str = ""
    mime_type: str = ""
    source_uri: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    chunk_count: int = 0
    token_count: int = 0
    size_bytes: int = 0
    content_sha256: str = ""
    create_time: float = 0.0
    update_time: float = 0.0
    chunks: tuple[Chunk, ...] = ()  # in order; empty unless asked for


@dataclass(frozen=True)
class Deleted:
    documents: int
    chunks: int


# ------------------------------------------------------------------------------------------------ ingest


class IngestStage(enum.Enum):
    EMBEDDING = "embedding"
    INDEXING = "indexing"


class Outcome(enum.Enum):
    CREATED = "created"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"  # same content, metadata, title, source and chunking: left alone


@dataclass(frozen=True)
class IngestProgress:
    document_id: str
    stage: IngestStage
    documents_done: int
    documents_total: int
    chunks_done: int = 0
    chunks_total: int = 0


@dataclass(frozen=True)
class DocumentResult:
    document_id: str
    outcome: Outcome
    chunk_count: int
    token_count: int


@dataclass(frozen=True)
class Ingested:
    results: list[DocumentResult]
    tokens: int  # embedding prompt tokens


IngestEvent = IngestProgress | DocumentResult | Ingested

# ------------------------------------------------------------------------------------------------ search


@dataclass(frozen=True)
class Match:
    """The payload value at ``key`` (a payload path such as ``metadata.lang``) equals ``value``."""

    key: str
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gt: float | str | None = None
    gte: float | str | None = None
    lt: float | str | None = None
    lte: float | str | None = None
    datetime: bool = False  # bounds are RFC 3339 strings then


@dataclass(frozen=True)
class Filter:
    """Conditions on chunk payloads; a condition is a ``Match``, ``MatchAny``, ``Range`` or a nested ``Filter``."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def empty(self) -> bool:
        return not (self.must or self.should or self.must_not)


Condition = Match | MatchAny | Range | Filter


class SearchMode(enum.Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"  # both stages, fused


class Fusion(enum.Enum):
    RRF = "rrf"
    DBSF = "dbsf"


@dataclass(frozen=True)
class RerankOptions:
    enabled: bool = False
    model: str = ""  # empty: the service's reranker
    fuse: bool = False  # fuse the reranker's scores with the first stage's instead of replacing them


@dataclass(frozen=True)
class SearchOptions:
    top_k: int | None = None
    mode: SearchMode | None = None  # None: hybrid on a collection with sparse vectors, else dense
    fusion: Fusion | None = None
    filter: Filter | None = None
    score_threshold: float | None = None
    candidate_count: int | None = None
    rerank: RerankOptions = RerankOptions()


@dataclass(frozen=True)
class StageScores:
    """The score a result got from each stage it went through; ``None``: not scored by that stage."""

    dense: float | None = None
    sparse: float | None = None
    fused: float | None = None
    rerank: float | None = None


@dataclass(frozen=True)
class SearchResult:
    chunk: Chunk
    score: float  # the score the results are ordered by
    stage_scores: StageScores = StageScores()


@dataclass(frozen=True)
class Searched:
    results: list[SearchResult]
    tokens: int  # embedding (and rerank) prompt tokens


# ------------------------------------------------------------------------------------------------ answer


@dataclass(frozen=True)
class GenerationOptions:
    model: str = ""  # empty: the service's answer model
    max_new_tokens: int | None = None
    temperature: float | None = None  # None: 0 (greedy), answers should not wander
    top_p: float | None = None
    system_prompt: str = ""  # empty: grounding.DEFAULT_SYSTEM_PROMPT
    context_token_budget: int | None = None


@dataclass(frozen=True)
class Citation:
    """The context ``context_index`` backs the answer's text ``answer_span`` (``None``: the whole answer)."""

    document_id: str
    chunk_id: str
    context_index: int
    quote: str
    answer_span: Span | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts, as a model service reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class Grounded:
    """The passages an answer may use, and what retrieving them cost (the first event of a streamed answer)."""

    contexts: list[SearchResult]
    retrieval_tokens: int


@dataclass(frozen=True)
class AnswerDone:
    """The end of a streamed answer."""

    citations: list[Citation]
    usage: Usage
    model: str
    truncated: bool  # the answer hit max_new_tokens


@dataclass(frozen=True)
class TextDelta:
    """The next piece of a streamed text."""

    text: str


@dataclass(frozen=True)
class Failure:
    """An error another service reported inside its stream, passed on to the caller as it came."""

    code: str
    reason: str
    message: str


@dataclass(frozen=True)
class Answered:
    answer: str
    citations: list[Citation]
    contexts: list[SearchResult]
    retrieval_tokens: int
    usage: Usage
    model: str
    truncated: bool


AnswerEvent = Grounded | TextDelta | AnswerDone | Failure

# ------------------------------------------------------------------------------------- what the ports speak


class SparseVector(NamedTuple):
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class EmbeddingModel:
    """What the embedding service says about a model."""

    model: str
    revision: str
    dimensions: int
    supported_dimensions: tuple[int, ...] = ()  # sizes it can truncate to (Matryoshka)


@dataclass(frozen=True)
class Embedded:
    dense: list[list[float]]  # empty when not asked for
    sparse: list[SparseVector]  # empty when not asked for
    prompt_tokens: int


@dataclass(frozen=True)
class Reranked:
    scores: list[tuple[int, float]]  # (passage index, score) for the passages the reranker scored
    prompt_tokens: int


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user", "assistant"
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    max_new_tokens: int
    temperature: float
    top_p: float | None = None


@dataclass(frozen=True)
class ChatReply:
    text: str
    usage: Usage
    model: str
    truncated: bool  # stopped at max_new_tokens


@dataclass(frozen=True)
class ChatDone:
    """The end of a streamed chat."""

    usage: Usage
    model: str
    truncated: bool


ChatEvent = TextDelta | ChatDone | Failure
