"""The retrieval API's protobuf messages <-> the domain's values (``types.py``), both directions.

The only module besides the servicer that touches ``genai.retrieval.v1``. It owns two kinds of rules,
the ones protobuf cannot say: an enum number this build does not know (``InvalidArgument`` naming the
field) and which member of a oneof is set. Every rule about values belongs to the domain; a filter's
conditions are built through ``filters``, which checks them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar

from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.type.v1 import error_pb2, usage_pb2
from genai_core import rpc
from genai_core.errors import InvalidArgument
from genai_core.operations_servicer import Converters
from genai_core.structs import struct_to_dict
from google.protobuf import message, struct_pb2, timestamp_pb2

from genai_retrieval import filters
from genai_retrieval.ingestion import INGEST_OPERATION
from genai_retrieval.types import (
    AnswerDone,
    AnswerEvent,
    Chunk,
    ChunkingOptions,
    Citation,
    Collection,
    CollectionSpec,
    Counts,
    Distance,
    Document,
    DocumentInput,
    DocumentResult,
    Failure,
    Filter,
    Fusion,
    GenerationOptions,
    Grounded,
    Ingested,
    IngestEvent,
    IngestProgress,
    IngestStage,
    Match,
    Outcome,
    RerankOptions,
    SearchMode,
    SearchOptions,
    SearchResult,
    ServiceInfo,
    Span,
    Splitter,
    TextDelta,
    Usage,
    VectorConfig,
)

E = TypeVar("E")

# Proto enum number -> domain enum; UNSPECIFIED is None (the domain picks the default).
DISTANCES: dict[int, Distance | None] = {
    pb.DISTANCE_UNSPECIFIED: None, pb.DISTANCE_COSINE: Distance.COSINE, pb.DISTANCE_DOT: Distance.DOT,
    pb.DISTANCE_EUCLID: Distance.EUCLID, pb.DISTANCE_MANHATTAN: Distance.MANHATTAN,
}
SPLITTERS: dict[int, Splitter | None] = {
    pb.SPLITTER_UNSPECIFIED: None, pb.SPLITTER_TOKEN: Splitter.TOKEN, pb.SPLITTER_RECURSIVE: Splitter.RECURSIVE,
    pb.SPLITTER_SENTENCE: Splitter.SENTENCE, pb.SPLITTER_MARKDOWN: Splitter.MARKDOWN,
}
MODES: dict[int, SearchMode | None] = {
    pb.SEARCH_MODE_UNSPECIFIED: None, pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
    pb.SEARCH_MODE_SPARSE: SearchMode.SPARSE, pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
}
FUSIONS: dict[int, Fusion | None] = {
    pb.FUSION_UNSPECIFIED: None, pb.FUSION_RRF: Fusion.RRF, pb.FUSION_DBSF: Fusion.DBSF,
}
STAGES = {IngestStage.EMBEDDING: pb.IngestProgress.STAGE_EMBEDDING,
          IngestStage.INDEXING: pb.IngestProgress.STAGE_INDEXING}
OUTCOMES = {Outcome.CREATED: pb.DocumentResult.OUTCOME_CREATED, Outcome.REPLACED: pb.DocumentResult.OUTCOME_REPLACED,
            Outcome.UNCHANGED: pb.DocumentResult.OUTCOME_UNCHANGED}


def _inverse(table: Mapping[int, E | None]) -> dict[E, int]:
    return {v: k for k, v in table.items() if v is not None}


_DISTANCE_PB = _inverse(DISTANCES)
_SPLITTER_PB = _inverse(SPLITTERS)


def _enum(table: Mapping[int, E | None], number: int, path: str, what: str) -> E | None:
    if number not in table:
        raise InvalidArgument.for_field(path, f"unknown {what}")
    return table[number]


def _optional(msg: message.Message, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


# ----------------------------------------------------------------------------------------- requests in


def collection_spec(request: pb.CreateCollectionRequest) -> CollectionSpec:
    return CollectionSpec(
        name=request.name, description=request.description, embedding_model=request.embedding_model,
        vector_config=VectorConfig(
            request.vector_config.dimensions or None,
            _enum(DISTANCES, request.vector_config.distance, "vector_config.distance", "distance")),
        sparse_enabled=request.sparse_enabled, sparse_model=request.sparse_model, labels=dict(request.labels),
        default_chunking=chunking_options(request.default_chunking, "default_chunking"),
    )


def chunking_options(msg: pb.ChunkingOptions, path: str) -> ChunkingOptions:
    return ChunkingOptions(_optional(msg, "chunk_size_tokens"), _optional(msg, "chunk_overlap_tokens"),
                           _enum(SPLITTERS, msg.splitter, f"{path}.splitter", "splitter"))


def document_input(msg: pb.DocumentInput) -> DocumentInput:
    content = msg.WhichOneof("content")  # neither: an empty document, which the ingestion reports
    return DocumentInput(
        document_id=msg.document_id, mime_type=msg.mime_type, text=msg.text if content == "text" else None,
        data=msg.data if content == "data" else None, title=msg.title, source_uri=msg.source_uri,
        metadata=struct_to_dict(msg.metadata),
    )


def documents(msgs: Iterable[pb.DocumentInput]) -> list[DocumentInput]:
    return [document_input(m) for m in msgs]


def _value(v: pb.Value, path: str) -> str | int | bool:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument.for_field(path, "set string_value, integer_value or bool_value")
    return getattr(v, kind)


def _rfc3339(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bounds(msg: message.Message, as_value=lambda x: x) -> dict[str, Any]:  # noqa: ANN001
    return {b: as_value(getattr(msg, b)) if msg.HasField(b) else None for b in ("gt", "gte", "lt", "lte")}


def _field(f: pb.FieldCondition, path: str):  # noqa: ANN202
    key = filters.metadata_key(f.key, f"{path}.key")
    predicate = f.WhichOneof("predicate")
    if predicate == "equals":
        return Match(key, _value(f.equals, f"{path}.equals"))
    if predicate == "any_of":
        return filters.any_of(key, list(f.any_of.string_values), list(f.any_of.integer_values), f"{path}.any_of")
    if predicate == "range":
        return filters.value_range(key, _bounds(f.range), f"{path}.range")
    if predicate == "timestamp_range":
        return filters.value_range(key, _bounds(f.timestamp_range, _rfc3339), f"{path}.timestamp_range",
                                   datetime=True)
    raise InvalidArgument.for_field(path, "set equals, any_of, range or timestamp_range")


def _condition(c: pb.Condition, path: str):  # noqa: ANN202
    kind = c.WhichOneof("condition")
    if kind == "filter":
        return filter_(c.filter, f"{path}.filter")
    if kind == "document_ids":
        return filters.document_ids(list(c.document_ids.document_ids), f"{path}.document_ids")
    if kind == "field":
        return _field(c.field, f"{path}.field")
    raise InvalidArgument.for_field(path, "set field, filter or document_ids")


def filter_(f: pb.Filter, path: str = "filter") -> Filter:
    """The request's filter; an error names the bad condition's path, such as ``filter.must[0].field.key``."""
    return Filter(
        must=tuple(_condition(c, f"{path}.must[{i}]") for i, c in enumerate(f.must)),
        should=tuple(_condition(c, f"{path}.should[{i}]") for i, c in enumerate(f.should)),
        must_not=tuple(_condition(c, f"{path}.must_not[{i}]") for i, c in enumerate(f.must_not)),
    )


def optional_filter(owner: message.Message, path: str = "filter") -> Filter | None:
    """``owner.filter`` when set."""
    return filter_(owner.filter, path) if owner.HasField("filter") else None


def delete_selector(request: pb.DeleteDocumentsRequest) -> tuple[list[str] | None, Filter | None]:
    """(document ids, filter): the member of the ``selector`` oneof that is set, the other ``None``."""
    which = request.WhichOneof("selector")
    ids = list(request.document_ids.document_ids) if which == "document_ids" else None
    return ids, filter_(request.filter) if which == "filter" else None


def search_options(msg: pb.SearchOptions, path: str) -> SearchOptions:
    """``path`` is where the request keeps the options (``options`` in Search, ``search`` in Answer)."""
    return SearchOptions(
        top_k=_optional(msg, "top_k"), mode=_enum(MODES, msg.mode, f"{path}.mode", "search mode"),
        fusion=_enum(FUSIONS, msg.fusion, f"{path}.fusion", "fusion"),
        filter=optional_filter(msg, f"{path}.filter"), score_threshold=_optional(msg, "score_threshold"),
        candidate_count=_optional(msg, "candidate_count"),
        rerank=RerankOptions(msg.rerank.enabled, msg.rerank.model, msg.rerank.fuse),
    )


def generation_options(msg: pb.GenerationOptions) -> GenerationOptions:
    return GenerationOptions(
        model=msg.model, max_new_tokens=_optional(msg, "max_new_tokens"), temperature=_optional(msg, "temperature"),
        top_p=_optional(msg, "top_p"), system_prompt=msg.system_prompt,
        context_token_budget=_optional(msg, "context_token_budget"),
    )


# ---------------------------------------------------------------------------------------- responses out


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def usage(u: Usage) -> usage_pb2.Usage:
    """A model service's counts, passed on as it reported them."""
    return usage_pb2.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           total_tokens=u.total_tokens, cached_prompt_tokens=u.cached_prompt_tokens)


def chunking(size: int, overlap: int, splitter: Splitter | None) -> pb.ChunkingOptions:
    return pb.ChunkingOptions(chunk_size_tokens=size, chunk_overlap_tokens=overlap,
                              splitter=_SPLITTER_PB.get(splitter, pb.SPLITTER_UNSPECIFIED))


def info(i: ServiceInfo, request_id: str) -> pb.GetInfoResponse:
    return pb.GetInfoResponse(
        request_id=request_id, engine=i.engine, engine_version=i.engine_version,
        default_embedding_model=i.default_embedding_model, default_sparse_model=i.default_sparse_model,
        default_reranker_model=i.default_reranker_model, default_answer_model=i.default_answer_model,
        default_chunking=chunking(i.default_chunking.size, i.default_chunking.overlap, i.default_chunking.splitter),
        supported_mime_types=list(i.supported_mime_types), max_documents_per_request=i.max_documents_per_request,
        max_document_bytes=i.max_document_bytes, max_top_k=i.max_top_k, max_message_bytes=i.max_message_bytes,
    )


def collection(c: Collection, counts: Counts = Counts(0, 0)) -> pb.Collection:
    return pb.Collection(
        tenant=c.tenant, name=c.name, description=c.description, embedding_model=c.embedding_model,
        embedding_model_revision=c.embedding_model_revision,
        vector_config=pb.VectorConfig(dimensions=c.dimensions, distance=_DISTANCE_PB[c.distance]),
        sparse_enabled=c.sparse_enabled, sparse_model=c.sparse_model,
        default_chunking=chunking(c.chunking.size, c.chunking.overlap, c.chunking.splitter),
        labels=dict(c.labels), document_count=counts.documents, chunk_count=counts.chunks,
        create_time=timestamp(c.create_time), update_time=timestamp(c.update_time),
    )


def chunk(c: Chunk) -> pb.Chunk:
    out = pb.Chunk(
        chunk_id=c.chunk_id, document_id=c.document_id, index=c.index, text=c.text, token_count=c.token_count,
        span=pb.TextSpan(start=c.span.start, end=c.span.end), metadata=_struct(c.metadata), title=c.title,
        source_uri=c.source_uri,
    )
    if c.page_number is not None:
        out.page_number = c.page_number
    return out


def document(d: Document) -> pb.Document:
    return pb.Document(
        document_id=d.document_id, title=d.title, mime_type=d.mime_type, source_uri=d.source_uri,
        metadata=_struct(d.metadata), chunk_count=d.chunk_count, token_count=d.token_count,
        size_bytes=d.size_bytes, content_sha256=d.content_sha256, create_time=timestamp(d.create_time),
        update_time=timestamp(d.update_time), chunks=[chunk(c) for c in d.chunks],
    )


def search_result(r: SearchResult) -> pb.SearchResult:
    s = r.stage_scores
    scores = pb.StageScores(dense=s.dense, sparse=s.sparse, fused=s.fused, rerank=s.rerank)  # None: unset
    return pb.SearchResult(chunk=chunk(r.chunk), score=r.score, stage_scores=scores)


def search_results(results: Iterable[SearchResult]) -> list[pb.SearchResult]:
    return [search_result(r) for r in results]


def _span(s: Span | None) -> pb.TextSpan | None:
    return pb.TextSpan(start=s.start, end=s.end) if s is not None else None


def citations(cs: Iterable[Citation]) -> list[pb.Citation]:
    return [pb.Citation(document_id=c.document_id, chunk_id=c.chunk_id, context_index=c.context_index,
                        answer_span=_span(c.answer_span), quote=c.quote) for c in cs]


def document_result(r: DocumentResult) -> pb.DocumentResult:
    return pb.DocumentResult(document_id=r.document_id, outcome=OUTCOMES[r.outcome], chunk_count=r.chunk_count,
                             token_count=r.token_count)


def _since(started: float) -> usage_pb2.Timings:
    return rpc.timings(time.perf_counter() - started)


def ingest_progress(event: IngestProgress) -> pb.IngestProgress:
    return pb.IngestProgress(document_id=event.document_id, stage=STAGES[event.stage],
                             documents_done=event.documents_done, documents_total=event.documents_total,
                             chunks_done=event.chunks_done, chunks_total=event.chunks_total)


def ingested(summary: Ingested, request_id: str = "", started: float | None = None) -> pb.IngestDocumentsResponse:
    return pb.IngestDocumentsResponse(
        request_id=request_id, results=[document_result(r) for r in summary.results], usage=rpc.usage(summary.tokens),
        timings=_since(started) if started is not None else None)


# How the long-running ingest's progress and result travel in genai.type.v1.Operation (metadata, response).
OPERATIONS = {INGEST_OPERATION: Converters(progress=ingest_progress, result=ingested)}


def _ingest_event(event: IngestEvent, started: float) -> tuple[str, message.Message]:
    match event:
        case IngestProgress():
            return "progress", ingest_progress(event)
        case DocumentResult():
            return "document", document_result(event)
        case Ingested():
            return "complete", pb.IngestSummary(results=[document_result(r) for r in event.results],
                                                usage=rpc.usage(event.tokens), timings=_since(started))
    raise TypeError(f"not an ingest event: {event!r}")


async def ingest_events(events: AsyncIterator[IngestEvent], started: float) -> AsyncIterator[tuple[str, Any]]:
    """The ingestion's events as (oneof member, message) of ``IngestDocumentsStreamResponse.event``."""
    async for event in events:
        yield _ingest_event(event, started)


def _answer_event(event: AnswerEvent, started: float) -> tuple[str, message.Message]:
    match event:
        case Grounded():
            return "contexts", pb.AnswerContexts(contexts=search_results(event.contexts),
                                                 retrieval_usage=rpc.usage(event.retrieval_tokens))
        case TextDelta():
            return "delta", pb.AnswerDelta(text=event.text)
        case AnswerDone():
            return "complete", pb.AnswerComplete(citations=citations(event.citations), usage=usage(event.usage),
                                                 timings=_since(started), model=event.model,
                                                 truncated=event.truncated)
        case Failure():
            return "error", error_pb2.ErrorDetail(code=event.code, reason=event.reason, message=event.message)
    raise TypeError(f"not an answer event: {event!r}")


async def answer_events(events: AsyncIterator[AnswerEvent], started: float) -> AsyncIterator[tuple[str, Any]]:
    """The answer's events as (oneof member, message) of ``AnswerStreamResponse.event``."""
    async for event in events:
        yield _answer_event(event, started)
