"""gRPC adapter for the retrieval domain: proto in, tenant and request id out of it, domain call, proto out."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from genai.type.v1 import error_pb2, usage_pb2
from genai_core import spans
from genai_core.deferred import Deferred
from genai_core.errors import GenAIError
from genai_core.server import ServiceSpec

from genai_retrieval import ingest, resources
from genai_retrieval.answer import check_question
from genai_retrieval.service import Retrieval
from genai_retrieval.store import check_name

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name


def _rid(request) -> str:
    return request.request_id or uuid.uuid4().hex


def _tenant(request) -> str:
    return check_name(request.tenant or "default", "tenant")


def _timings(start: float) -> usage_pb2.Timings:
    out = usage_pb2.Timings()
    out.total_duration.FromNanoseconds(int((time.perf_counter() - start) * 1e9))
    return out


def _error(exc: Exception) -> error_pb2.ErrorDetail:
    if isinstance(exc, GenAIError):
        return error_pb2.ErrorDetail(code=exc.code.value, reason=exc.reason or exc.code.value, message=exc.message)
    return error_pb2.ErrorDetail(code="INTERNAL", reason="INTERNAL", message="internal error")


async def _in_band(events: AsyncIterator[tuple[str, Any]], what: str, rid: str) -> AsyncIterator[tuple[str, Any]]:
    """``events``, then ("error", ErrorDetail) if they fail once one has been sent; before that, failures raise."""
    started = False
    try:
        async for kind, event in events:
            started = True
            yield kind, event
    except Exception as exc:  # noqa: BLE001 - output has started: report in-band
        if not started:
            raise
        if not isinstance(exc, GenAIError):
            logger.exception("%s %s failed", what, rid)
        yield "error", _error(exc)


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, retrieval: Deferred[Retrieval], max_message_bytes: int = 0) -> None:
        self._deferred = retrieval
        self._max_message_bytes = max_message_bytes

    @property
    def _r(self) -> Retrieval:
        return self._deferred.get()

    # ------------------------------------------------------------------------------------- collections

    async def GetInfo(self, request, context):
        r = self._r
        s = r.settings
        return pb.GetInfoResponse(
            request_id=_rid(request), engine=r.store.engine, engine_version=r.store.engine_version,
            default_embedding_model=s.embedding_model, default_sparse_model=s.sparse_model,
            default_reranker_model=s.reranker_model, default_answer_model=s.answer_model,
            default_chunking=pb.ChunkingOptions(chunk_size_tokens=s.chunk_size_tokens,
                                                chunk_overlap_tokens=s.chunk_overlap_tokens,
                                                splitter=pb.SPLITTER_RECURSIVE),
            supported_mime_types=list(ingest.SUPPORTED), max_documents_per_request=s.max_documents_per_request,
            max_document_bytes=s.max_document_bytes, max_top_k=s.max_top_k,
            max_message_bytes=self._max_message_bytes,
        )

    async def CreateCollection(self, request, context):
        meta = await self._r.create_collection(
            _tenant(request), request.name, description=request.description,
            embedding_model=request.embedding_model, vector_config=request.vector_config,
            sparse_enabled=request.sparse_enabled, sparse_model=request.sparse_model, labels=request.labels,
            default_chunking=request.default_chunking,
        )
        return pb.CreateCollectionResponse(request_id=_rid(request), collection=resources.collection(meta))

    async def GetCollection(self, request, context):
        r = self._r
        meta = await r.meta(_tenant(request), request.collection)
        return pb.GetCollectionResponse(request_id=_rid(request),
                                        collection=resources.collection(meta, *await r.counts(meta)))

    async def ListCollections(self, request, context):
        r = self._r
        metas, nxt = await r.list_collections(_tenant(request), request.page_token, request.page_size)
        return pb.ListCollectionsResponse(
            request_id=_rid(request), next_page_token=nxt,
            collections=[resources.collection(m, *await r.counts(m)) for m in metas],
        )

    async def DeleteCollection(self, request, context):
        docs = await self._r.delete_collection(_tenant(request), request.collection)
        return pb.DeleteCollectionResponse(request_id=_rid(request), deleted_document_count=docs)

    # ----------------------------------------------------------------------------------------- ingest

    async def IngestDocuments(self, request, context):
        start = time.perf_counter()
        summary = None
        async for kind, event in self._r.ingest(_tenant(request), request.collection, request.documents,
                                                request.chunking):
            if kind == "complete":
                summary = event
        return pb.IngestDocumentsResponse(request_id=_rid(request), results=summary.results,
                                          usage=resources.usage(summary.tokens), timings=_timings(start))

    async def IngestDocumentsStream(self, request, context):
        start = time.perf_counter()
        rid = _rid(request)
        events = self._r.ingest(_tenant(request), request.collection, request.documents, request.chunking)
        async for kind, event in _in_band(events, "ingest stream", rid):
            if kind == "complete":
                event = pb.IngestSummary(results=event.results, usage=resources.usage(event.tokens),
                                         timings=_timings(start))
            yield pb.IngestDocumentsStreamResponse(request_id=rid, **{kind: event})

    # -------------------------------------------------------------------------------------- documents

    async def GetDocument(self, request, context):
        hits = await self._r.document_chunks(_tenant(request), request.collection, request.document_id)
        doc = resources.document(hits[0])
        if request.include_chunks:
            doc.chunks.extend(resources.chunk(h) for h in hits)
        return pb.GetDocumentResponse(request_id=_rid(request), document=doc)

    async def ListDocuments(self, request, context):
        hits, nxt = await self._r.list_documents(
            _tenant(request), request.collection, request.filter if request.HasField("filter") else None,
            request.page_token, request.page_size)
        return pb.ListDocumentsResponse(request_id=_rid(request), next_page_token=nxt,
                                        documents=[resources.document(h) for h in hits])

    async def DeleteDocuments(self, request, context):
        which = request.WhichOneof("selector")
        documents, chunks = await self._r.delete_documents(
            _tenant(request), request.collection,
            document_ids=request.document_ids.document_ids if which == "document_ids" else None,
            flt=request.filter if which == "filter" else None)
        return pb.DeleteDocumentsResponse(request_id=_rid(request), deleted_document_count=documents,
                                          deleted_chunk_count=chunks)

    # ------------------------------------------------------------------------------ search and answers

    async def Search(self, request, context):
        start = time.perf_counter()
        found = await self._r.search(_tenant(request), request.collection, request.query, request.options)
        return pb.SearchResponse(request_id=_rid(request), results=found.results,
                                 usage=resources.usage(found.tokens), timings=_timings(start))

    async def Answer(self, request, context):
        start = time.perf_counter()
        check_question(request.question)  # before the tenant, as the API has always checked them
        span = spans.current(spans.Operation.WORKFLOW).input_text(request.question)
        a = await self._r.answer(_tenant(request), request.collection, request.question, request.search,
                                 request.generation)
        span.output_text(a.answer)
        return pb.AnswerResponse(
            request_id=_rid(request), answer=a.answer, citations=a.citations, contexts=a.contexts, usage=a.usage,
            retrieval_usage=resources.usage(a.retrieval_tokens), timings=_timings(start), model=a.model,
            truncated=a.truncated,
        )

    async def AnswerStream(self, request, context):
        start = time.perf_counter()
        rid = _rid(request)
        check_question(request.question)  # before the tenant, as the API has always checked them
        events = self._r.answer_stream(_tenant(request), request.collection, request.question, request.search,
                                       request.generation)
        span = spans.current(spans.Operation.WORKFLOW).input_text(request.question)
        answer: list[str] = []
        async for kind, event in _in_band(events, "answer stream", rid):
            if kind == "contexts":
                event = pb.AnswerContexts(contexts=event.contexts,
                                          retrieval_usage=resources.usage(event.retrieval_tokens))
            elif kind == "delta":
                if span.captures:
                    answer.append(event)
                event = pb.AnswerDelta(text=event)
            elif kind == "complete":
                span.output_text("".join(answer))
                event = pb.AnswerComplete(citations=event.citations, usage=event.usage, timings=_timings(start),
                                          model=event.model, truncated=event.truncated)
            yield pb.AnswerStreamResponse(request_id=rid, **{kind: event})


def service_spec(retrieval: Deferred[Retrieval], max_message_bytes: int = 0) -> ServiceSpec:
    servicer = RetrievalServicer(retrieval, max_message_bytes)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, server))


__all__ = ["Retrieval", "RetrievalServicer", "service_spec"]
