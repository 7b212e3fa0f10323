"""gRPC adapter and orchestration of the retrieval service: collections, ingest, search and answers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from genai.embedding.v1 import embedding_service_pb2 as epb
from genai.inference.v1 import inference_service_pb2 as ipb
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from genai.tokenizer.v1 import tokenizer_service_pb2 as tpb
from genai.type.v1 import error_pb2, usage_pb2
from genai_core.deferred import Deferred
from genai_core.errors import GenAIError, InvalidArgument, NotFound
from genai_core.server import ServiceSpec
from genai_core.structs import struct_to_dict
from google.protobuf import struct_pb2, timestamp_pb2

from genai_retrieval import filters as F
from genai_retrieval import ingest
from genai_retrieval.downstream import Downstream, calling
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import DENSE, SPARSE, Hit, PointData, Store, check_name

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
RRF_K = 60
DEFAULT_PAGE = 100
DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite the sources you use with their number in "
    "brackets, such as [1]. If the sources do not contain the answer, say that you do not know."
)
_DISTANCE = {pb.DISTANCE_UNSPECIFIED: "cosine", pb.DISTANCE_COSINE: "cosine", pb.DISTANCE_DOT: "dot",
             pb.DISTANCE_EUCLID: "euclid", pb.DISTANCE_MANHATTAN: "manhattan"}
_DISTANCE_PB = {v: k for k, v in _DISTANCE.items() if k != pb.DISTANCE_UNSPECIFIED}
_SPLITTER = {pb.SPLITTER_TOKEN: "token", pb.SPLITTER_RECURSIVE: "recursive", pb.SPLITTER_SENTENCE: "sentence",
             pb.SPLITTER_MARKDOWN: "markdown"}
_SPLITTER_PB = {v: k for k, v in _SPLITTER.items()}
_CITE = re.compile(r"\[(\d{1,3})\]")
CHUNK_INDEX = "chunk_index"


def _rid(request) -> str:
    return request.request_id or uuid.uuid4().hex


def _tenant(request) -> str:
    return check_name(request.tenant or "default", "tenant")


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def _timings(start: float) -> usage_pb2.Timings:
    out = usage_pb2.Timings()
    out.total_duration.FromNanoseconds(int((time.perf_counter() - start) * 1e9))
    return out


def _usage(prompt: int = 0, completion: int = 0) -> usage_pb2.Usage:
    return usage_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _error(exc: Exception) -> error_pb2.ErrorDetail:
    if isinstance(exc, GenAIError):
        return error_pb2.ErrorDetail(code=exc.code.value, reason=exc.reason or exc.code.value, message=exc.message)
    return error_pb2.ErrorDetail(code="INTERNAL", reason="INTERNAL", message="internal error")


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def _page(token: str, field: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgument.for_field(field, "pass the next_page_token of a previous response")
    return int(token)


@dataclass
class Prepared:
    index: int
    document_id: str
    outcome: int
    payload_base: dict[str, Any]
    chunks: list[ingest.ChunkText]
    create_time: float
    dense: list[list[float]] | None = None
    sparse: list[tuple[list[int], list[float]]] | None = None
    token_count: int = 0


class Retrieval:
    """The service's state: settings, the vector store and the downstream clients."""

    def __init__(self, settings: RetrievalSettings, store: Store, downstream: Downstream) -> None:
        self.settings = settings
        self.store = store
        self.downstream = downstream

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def meta(self, tenant: str, name: str) -> dict[str, Any]:
        meta = await self.run(self.store.get, tenant, name) if name else None
        if meta is None:
            raise NotFound(f"collection {name!r} not found", resource_type="collection", resource_name=name)
        return meta

    async def close(self) -> None:
        await self.run(self.store.close)
        await self.downstream.close()


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, retrieval: Deferred[Retrieval], max_message_bytes: int = 0) -> None:
        self._deferred = retrieval
        self._max_message_bytes = max_message_bytes

    @property
    def _r(self) -> Retrieval:
        return self._deferred.get()

    # ------------------------------------------------------------------------------------- collections

    def _collection(self, meta: dict[str, Any], documents: int = 0, chunks: int = 0) -> pb.Collection:
        return pb.Collection(
            tenant=meta["tenant"], name=meta["name"], description=meta.get("description", ""),
            embedding_model=meta["embedding_model"], embedding_model_revision=meta.get("embedding_model_revision", ""),
            vector_config=pb.VectorConfig(dimensions=meta["dimensions"], distance=_DISTANCE_PB[meta["distance"]]),
            sparse_enabled=meta["sparse_enabled"], sparse_model=meta.get("sparse_model", ""),
            default_chunking=pb.ChunkingOptions(
                chunk_size_tokens=meta["chunk_size"], chunk_overlap_tokens=meta["chunk_overlap"],
                splitter=_SPLITTER_PB.get(meta.get("splitter", ""), pb.SPLITTER_UNSPECIFIED),
            ),
            labels=meta.get("labels", {}), document_count=documents, chunk_count=chunks,
            create_time=_ts(meta["create_time"]), update_time=_ts(meta["update_time"]),
        )

    async def _counted(self, meta: dict[str, Any]) -> pb.Collection:
        r = self._r
        chunks = await r.run(r.store.count, meta["tenant"], meta["name"], None)
        docs = await r.run(r.store.count, meta["tenant"], meta["name"], F.Filter(must=[F.Match(CHUNK_INDEX, 0)]))
        return self._collection(meta, docs, chunks)

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

    def _chunking(self, options: pb.ChunkingOptions, base: dict[str, Any], path: str) -> dict[str, Any]:
        size = options.chunk_size_tokens if options.HasField("chunk_size_tokens") else base["chunk_size"]
        overlap = options.chunk_overlap_tokens if options.HasField("chunk_overlap_tokens") else base["chunk_overlap"]
        splitter = _SPLITTER.get(options.splitter, base.get("splitter", ""))
        if size < 8 or size > 8192:
            raise InvalidArgument.for_field(f"{path}.chunk_size_tokens", "must be between 8 and 8192")
        if overlap >= size:
            raise InvalidArgument.for_field(f"{path}.chunk_overlap_tokens", "must be smaller than chunk_size_tokens")
        return {"chunk_size": size, "chunk_overlap": overlap, "splitter": splitter}

    async def CreateCollection(self, request, context):
        r = self._r
        tenant = _tenant(request)
        name = check_name(request.name, "name")
        if request.vector_config.distance not in _DISTANCE:
            raise InvalidArgument.for_field("vector_config.distance", "unknown distance")
        model = request.embedding_model or r.settings.embedding_model
        async with calling("embedding"):
            info = await r.downstream.embedding.GetInfo(epb.GetInfoRequest(model=model))
        dims = request.vector_config.dimensions or info.dimensions
        if dims != info.dimensions and dims not in info.supported_dimensions:
            raise InvalidArgument.for_field(
                "vector_config.dimensions",
                f"{dims} does not match embedding model {info.model!r}, which has {info.dimensions} dimensions",
            )
        now = time.time()
        base = {"chunk_size": r.settings.chunk_size_tokens, "chunk_overlap": r.settings.chunk_overlap_tokens,
                "splitter": ""}
        meta = {
            "tenant": tenant, "name": name, "description": request.description, "embedding_model": info.model,
            "embedding_model_revision": info.revision, "dimensions": dims,
            "model_dimensions": info.dimensions, "distance": _DISTANCE[request.vector_config.distance],
            "sparse_enabled": request.sparse_enabled,
            "sparse_model": (request.sparse_model or r.settings.sparse_model) if request.sparse_enabled else "",
            "labels": dict(request.labels), "create_time": now, "update_time": now,
            **self._chunking(request.default_chunking, base, "default_chunking"),
        }
        await r.run(r.store.create, tenant, name, meta)
        return pb.CreateCollectionResponse(request_id=_rid(request), collection=self._collection(meta))

    async def GetCollection(self, request, context):
        meta = await self._r.meta(_tenant(request), request.collection)
        return pb.GetCollectionResponse(request_id=_rid(request), collection=await self._counted(meta))

    async def ListCollections(self, request, context):
        r = self._r
        metas = await r.run(r.store.list, _tenant(request))
        start = _page(request.page_token, "page_token")
        size = request.page_size or DEFAULT_PAGE
        page = metas[start : start + size]
        nxt = str(start + size) if start + size < len(metas) else ""
        return pb.ListCollectionsResponse(
            request_id=_rid(request), collections=[await self._counted(m) for m in page], next_page_token=nxt
        )

    async def DeleteCollection(self, request, context):
        r = self._r
        tenant = _tenant(request)
        meta = await r.meta(tenant, request.collection)
        docs = await r.run(r.store.count, tenant, meta["name"], F.Filter(must=[F.Match(CHUNK_INDEX, 0)]))
        await r.run(r.store.drop, tenant, meta["name"])
        return pb.DeleteCollectionResponse(request_id=_rid(request), deleted_document_count=docs)

    # ----------------------------------------------------------------------------------------- ingest

    async def _embed(self, meta: dict[str, Any], texts: list[str], sparse: bool, dense: bool = True):
        """Dense and sparse vectors of ``texts`` in batches; (dense, sparse, prompt_tokens)."""
        r = self._r
        kind = epb.EMBEDDING_KIND_BOTH if sparse and dense else (
            epb.EMBEDDING_KIND_SPARSE if sparse else epb.EMBEDDING_KIND_DENSE)
        options = epb.EmbedOptions(kind=kind)
        if meta["dimensions"] != meta.get("model_dimensions", meta["dimensions"]):
            options.dimensions = meta["dimensions"]
        dense_out: list[list[float]] = []
        sparse_out: list[tuple[list[int], list[float]]] = []
        tokens = 0
        step = r.settings.embed_batch_size
        for i in range(0, len(texts), step):
            async with calling("embedding"):
                reply = await r.downstream.embedding.Embed(epb.EmbedRequest(
                    model=meta["embedding_model"], texts=epb.TextInputs(texts=texts[i : i + step]), options=options))
            tokens += reply.usage.prompt_tokens
            for e in reply.embeddings:
                if dense:
                    if len(e.dense.values) != meta["dimensions"]:
                        raise InvalidArgument.for_field(
                            "vector_config.dimensions",
                            f"the embedding service returned {len(e.dense.values)} dimensions, the collection has "
                            f"{meta['dimensions']}")
                    dense_out.append(list(e.dense.values))
                if sparse:
                    sparse_out.append((list(e.sparse.indices), list(e.sparse.values)))
        return dense_out, sparse_out, tokens

    async def _prepare(self, meta, request, tenant: str) -> list[Prepared]:
        r = self._r
        s = r.settings
        if not request.documents:
            raise InvalidArgument.for_field("documents", "send at least one document")
        if len(request.documents) > s.max_documents_per_request:
            raise InvalidArgument.for_field(
                "documents", f"{len(request.documents)} documents; at most {s.max_documents_per_request} per request")
        chunking = self._chunking(request.chunking, meta, "chunking")
        seen: set[str] = set()
        out: list[Prepared] = []
        for i, doc in enumerate(request.documents):
            path = f"documents[{i}]"
            doc_id = doc.document_id or uuid.uuid4().hex
            if doc_id in seen:
                raise InvalidArgument.for_field(f"{path}.document_id", f"document id {doc_id!r} appears twice")
            seen.add(doc_id)
            kind = doc.WhichOneof("content")
            raw = doc.text.encode("utf-8") if kind == "text" else doc.data if kind == "data" else b""
            if len(raw) > s.max_document_bytes:
                raise InvalidArgument.for_field(
                    f"{path}.{kind}", f"document {doc_id!r} has {len(raw)} bytes; the limit is {s.max_document_bytes}")
            if kind is None or not raw.strip():
                raise InvalidArgument.for_field(f"{path}.text", f"document {doc_id!r} is empty")
            try:
                parsed = ingest.parse(path, doc.mime_type, doc.text if kind == "text" else None,
                                      doc.data if kind == "data" else None)
            except InvalidArgument as exc:
                exc.message = f"document {doc_id!r}: {exc.message}"
                exc.args = (exc.message,)
                raise
            if not parsed.text.strip():
                raise InvalidArgument.for_field(f"{path}.text", f"document {doc_id!r} has no text")
            sha = hashlib.sha256(raw).hexdigest()
            metadata = struct_to_dict(doc.metadata)
            existing = await r.run(r.store.scroll, tenant, meta["name"],
                                   F.Filter(must=[F.Match(F.DOCUMENT_ID, doc_id), F.Match(CHUNK_INDEX, 0)]))
            create_time = time.time()
            outcome = pb.DocumentResult.OUTCOME_CREATED
            if existing:
                old = existing[0].payload
                create_time = old.get("doc", {}).get("create_time", create_time)
                same = (old.get("doc", {}).get("sha256") == sha and old.get("metadata") == metadata
                        and old.get("title") == doc.title and old.get("source_uri") == doc.source_uri
                        and old.get("doc", {}).get("chunking") == chunking)
                outcome = pb.DocumentResult.OUTCOME_UNCHANGED if same else pb.DocumentResult.OUTCOME_REPLACED
            chunks = [] if outcome == pb.DocumentResult.OUTCOME_UNCHANGED else await asyncio.to_thread(
                ingest.chunk, parsed, chunking["chunk_size"], chunking["chunk_overlap"], chunking["splitter"],
                s.splitter_tokenizer_path)
            if outcome == pb.DocumentResult.OUTCOME_UNCHANGED:
                chunks_count = int(existing[0].payload.get("doc", {}).get("chunk_count", 0))
                tokens = int(existing[0].payload.get("doc", {}).get("token_count", 0))
            else:
                chunks_count, tokens = len(chunks), sum(c.token_count for c in chunks)
            base = {
                F.DOCUMENT_ID: doc_id, "title": doc.title, "source_uri": doc.source_uri, "mime_type": parsed.mime_type,
                F.METADATA: metadata,
                "doc": {"sha256": sha, "size": len(raw), "create_time": create_time, "update_time": time.time(),
                        "chunk_count": chunks_count, "token_count": tokens, "chunking": chunking},
            }
            out.append(Prepared(i, doc_id, outcome, base, chunks, create_time, token_count=tokens))
        return out

    def _points(self, p: Prepared) -> list[PointData]:
        points = []
        for j, c in enumerate(p.chunks):
            payload = dict(p.payload_base)
            payload.update({CHUNK_INDEX: c.index, "text": c.text, "token_count": c.token_count,
                            "span_start": c.start, "span_end": c.end, "page_number": c.page_number})
            points.append(PointData(str(uuid.uuid4()), p.dense[j], p.sparse[j] if p.sparse else None, payload))
        return points

    async def _write(self, tenant: str, name: str, prepared: list[Prepared]) -> None:
        """Replace each changed document's chunks; on failure undo what this call wrote."""
        r = self._r
        written: list[str] = []
        try:
            for p in prepared:
                if p.outcome == pb.DocumentResult.OUTCOME_UNCHANGED:
                    continue
                old = await r.run(r.store.scroll, tenant, name, F.documents([p.document_id]))
                points = self._points(p)
                await r.run(r.store.upsert, tenant, name, points)
                written.extend(x.id for x in points)
                await r.run(r.store.delete, tenant, name, [h.id for h in old])
        except Exception:
            logger.exception("writing to %s/%s failed; removing the new chunks", tenant, name)
            await r.run(r.store.delete, tenant, name, written)
            raise

    async def _ingest_events(self, request) -> AsyncIterator[tuple[str, Any]]:
        """Yields ("progress", IngestProgress), ("document", DocumentResult), finally ("complete", summary)."""
        r = self._r
        start = time.perf_counter()
        tenant = _tenant(request)
        meta = await r.meta(tenant, request.collection)
        prepared = await self._prepare(meta, request, tenant)
        total = len(prepared)
        tokens = 0
        for p in prepared:  # embed everything first: a failure leaves the collection as it was
            yield "progress", pb.IngestProgress(document_id=p.document_id, stage=pb.IngestProgress.STAGE_EMBEDDING,
                                                documents_done=0, documents_total=total, chunks_total=len(p.chunks))
            if p.chunks:
                p.dense, sparse, used = await self._embed(meta, [c.text for c in p.chunks], meta["sparse_enabled"])
                p.sparse = sparse or None
                tokens += used
        results = []
        for done, p in enumerate(prepared):
            yield "progress", pb.IngestProgress(document_id=p.document_id, stage=pb.IngestProgress.STAGE_INDEXING,
                                                documents_done=done, documents_total=total,
                                                chunks_done=len(p.chunks), chunks_total=len(p.chunks))
        await self._write(tenant, meta["name"], prepared)
        for p in prepared:
            result = pb.DocumentResult(document_id=p.document_id, outcome=p.outcome,
                                       chunk_count=int(p.payload_base["doc"]["chunk_count"]), token_count=p.token_count)
            results.append(result)
            yield "document", result
        meta["update_time"] = time.time()
        await r.run(r.store.update_meta, tenant, meta["name"], meta)
        yield "complete", pb.IngestSummary(results=results, usage=_usage(tokens), timings=_timings(start))

    async def IngestDocuments(self, request, context):
        summary = None
        async for kind, event in self._ingest_events(request):
            if kind == "complete":
                summary = event
        return pb.IngestDocumentsResponse(request_id=_rid(request), results=summary.results, usage=summary.usage,
                                          timings=summary.timings)

    async def IngestDocumentsStream(self, request, context):
        rid = _rid(request)
        started = False
        try:
            async for kind, event in self._ingest_events(request):
                started = True
                yield pb.IngestDocumentsStreamResponse(request_id=rid, **{kind: event})
        except Exception as exc:
            if not started:
                raise
            if not isinstance(exc, GenAIError):
                logger.exception("ingest stream %s failed", rid)
            yield pb.IngestDocumentsStreamResponse(request_id=rid, error=_error(exc))

    # -------------------------------------------------------------------------------------- documents

    @staticmethod
    def _chunk(h: Hit) -> pb.Chunk:
        p = h.payload
        chunk = pb.Chunk(
            chunk_id=h.id, document_id=p.get(F.DOCUMENT_ID, ""), index=int(p.get(CHUNK_INDEX, 0)),
            text=p.get("text", ""), token_count=int(p.get("token_count", 0)),
            span=pb.TextSpan(start=int(p.get("span_start", 0)), end=int(p.get("span_end", 0))),
            metadata=_struct(p.get(F.METADATA) or {}), title=p.get("title", ""), source_uri=p.get("source_uri", ""),
        )
        if p.get("page_number") is not None:
            chunk.page_number = int(p["page_number"])
        return chunk

    @staticmethod
    def _document(h: Hit) -> pb.Document:
        p = h.payload
        d = p.get("doc", {})
        return pb.Document(
            document_id=p.get(F.DOCUMENT_ID, ""), title=p.get("title", ""), mime_type=p.get("mime_type", ""),
            source_uri=p.get("source_uri", ""), metadata=_struct(p.get(F.METADATA) or {}),
            chunk_count=int(d.get("chunk_count", 0)), token_count=int(d.get("token_count", 0)),
            size_bytes=int(d.get("size", 0)), content_sha256=d.get("sha256", ""),
            create_time=_ts(d.get("create_time", 0)), update_time=_ts(d.get("update_time", 0)),
        )

    async def GetDocument(self, request, context):
        r = self._r
        tenant = _tenant(request)
        meta = await r.meta(tenant, request.collection)
        hits = await r.run(r.store.scroll, tenant, meta["name"], F.documents([request.document_id]))
        if not request.document_id or not hits:
            raise NotFound(f"document {request.document_id!r} not found", resource_type="document",
                           resource_name=request.document_id)
        hits.sort(key=lambda h: h.payload.get(CHUNK_INDEX, 0))
        doc = self._document(hits[0])
        if request.include_chunks:
            doc.chunks.extend(self._chunk(h) for h in hits)
        return pb.GetDocumentResponse(request_id=_rid(request), document=doc)

    async def ListDocuments(self, request, context):
        r = self._r
        tenant = _tenant(request)
        meta = await r.meta(tenant, request.collection)
        flt = F.combine(F.Filter(must=[F.Match(CHUNK_INDEX, 0)]),
                        F.from_proto(request.filter) if request.HasField("filter") else None)
        hits = sorted(await r.run(r.store.scroll, tenant, meta["name"], flt),
                      key=lambda h: h.payload.get(F.DOCUMENT_ID, ""))
        start = _page(request.page_token, "page_token")
        size = request.page_size or DEFAULT_PAGE
        nxt = str(start + size) if start + size < len(hits) else ""
        return pb.ListDocumentsResponse(request_id=_rid(request), next_page_token=nxt,
                                        documents=[self._document(h) for h in hits[start : start + size]])

    async def DeleteDocuments(self, request, context):
        r = self._r
        tenant = _tenant(request)
        meta = await r.meta(tenant, request.collection)
        which = request.WhichOneof("selector")
        if which == "document_ids":
            if not request.document_ids.document_ids:
                raise InvalidArgument.for_field("document_ids", "name at least one document id")
            flt = F.documents(list(request.document_ids.document_ids))
        elif which == "filter":
            flt = F.from_proto(request.filter)
            if flt.empty():
                raise InvalidArgument.for_field("filter", "set at least one condition, so nothing is deleted by accident")
        else:
            raise InvalidArgument.for_field("document_ids", "set document_ids or filter")
        hits = await r.run(r.store.scroll, tenant, meta["name"], flt)
        # A filter on metadata matches every chunk of a document, since each chunk carries the metadata.
        doc_ids = sorted({h.payload.get(F.DOCUMENT_ID) for h in hits})
        all_hits = await r.run(r.store.scroll, tenant, meta["name"], F.documents(doc_ids)) if doc_ids else []
        await r.run(r.store.delete, tenant, meta["name"], [h.id for h in all_hits])
        if doc_ids:
            meta["update_time"] = time.time()
            await r.run(r.store.update_meta, tenant, meta["name"], meta)
        return pb.DeleteDocumentsResponse(request_id=_rid(request), deleted_document_count=len(doc_ids),
                                          deleted_chunk_count=len(all_hits))

    # ----------------------------------------------------------------------------------------- search

    async def _search(self, tenant: str, collection: str, query: str, options: pb.SearchOptions, path: str = "options"):
        """(results, usage_tokens)."""
        r = self._r
        meta = await r.meta(tenant, collection)
        if not query.strip():
            raise InvalidArgument.for_field("query", "the query is empty")
        top_k = options.top_k if options.HasField("top_k") else 10
        if not 1 <= top_k <= r.settings.max_top_k:
            raise InvalidArgument.for_field(f"{path}.top_k", f"must be between 1 and {r.settings.max_top_k}")
        mode = options.mode or (pb.SEARCH_MODE_HYBRID if meta["sparse_enabled"] else pb.SEARCH_MODE_DENSE)
        if mode not in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_SPARSE, pb.SEARCH_MODE_HYBRID):
            raise InvalidArgument.for_field(f"{path}.mode", "unknown search mode")
        if mode != pb.SEARCH_MODE_DENSE and not meta["sparse_enabled"]:
            raise InvalidArgument.for_field(
                f"{path}.mode", f"collection {meta['name']!r} has no sparse vectors; use SEARCH_MODE_DENSE")
        if options.fusion not in (pb.FUSION_UNSPECIFIED, pb.FUSION_RRF, pb.FUSION_DBSF):
            raise InvalidArgument.for_field(f"{path}.fusion", "unknown fusion")
        candidates = options.candidate_count if options.HasField("candidate_count") else 4 * top_k
        candidates = max(candidates, top_k)
        flt = F.from_proto(options.filter, f"{path}.filter") if options.HasField("filter") else None
        use_dense, use_sparse = mode != pb.SEARCH_MODE_SPARSE, mode != pb.SEARCH_MODE_DENSE
        dense_q, sparse_q, tokens = await self._embed(meta, [query], use_sparse, use_dense)
        limit = candidates if (mode == pb.SEARCH_MODE_HYBRID or options.rerank.enabled) else top_k
        dense_hits = await r.run(r.store.search, tenant, meta["name"], DENSE, dense_q[0], limit, flt) if use_dense else []
        sparse_hits = []
        if use_sparse and sparse_q[0][0]:
            sparse_hits = await r.run(r.store.search, tenant, meta["name"], SPARSE, sparse_q[0], limit, flt)
        rows: dict[str, dict[str, Any]] = {}
        for stage, hits in ((DENSE, dense_hits), (SPARSE, sparse_hits)):
            for rank, h in enumerate(hits):
                row = rows.setdefault(h.id, {"hit": h, "scores": {}, "ranks": {}})
                row["scores"][stage] = h.score
                row["ranks"][stage] = rank
        if mode == pb.SEARCH_MODE_HYBRID:
            if options.fusion == pb.FUSION_DBSF:
                norms = {}
                for stage, hits in ((DENSE, dense_hits), (SPARSE, sparse_hits)):
                    scores = [h.score for h in hits]
                    if scores:
                        mean = sum(scores) / len(scores)
                        std = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5
                        norms[stage] = (mean - 3 * std, mean + 3 * std)
                for row in rows.values():
                    row["fused"] = sum(
                        (row["scores"][st] - lo) / (hi - lo) if hi > lo else 0.5
                        for st, (lo, hi) in norms.items() if st in row["scores"])
            else:
                for row in rows.values():
                    row["fused"] = sum(1.0 / (RRF_K + rank + 1) for rank in row["ranks"].values())
            ordered = sorted(rows.values(), key=lambda x: -x["fused"])
            for row in ordered:
                row["final"] = row["fused"]
        else:
            stage = DENSE if use_dense else SPARSE
            ordered = sorted(rows.values(), key=lambda x: -x["scores"][stage])
            for row in ordered:
                row["final"] = row["scores"][stage]
        ordered = ordered[:candidates]
        if options.rerank.enabled and ordered:
            async with calling("embedding"):
                reply = await r.downstream.embedding.Rerank(epb.RerankRequest(
                    model=options.rerank.model or r.settings.reranker_model, query=query,
                    passages=[row["hit"].payload.get("text", "") for row in ordered]))
            tokens += reply.usage.prompt_tokens
            for res in reply.results:
                ordered[res.index]["rerank"] = res.score
                ordered[res.index]["final"] = res.score
            ordered = sorted(ordered, key=lambda x: -x.get("rerank", float("-inf")))
        if options.HasField("score_threshold"):
            ordered = [row for row in ordered if row["final"] >= options.score_threshold]
        results = []
        for row in ordered[:top_k]:
            scores = pb.StageScores()
            if DENSE in row["scores"]:
                scores.dense = row["scores"][DENSE]
            if SPARSE in row["scores"]:
                scores.sparse = row["scores"][SPARSE]
            if "fused" in row:
                scores.fused = row["fused"]
            if "rerank" in row:
                scores.rerank = row["rerank"]
            results.append(pb.SearchResult(chunk=self._chunk(row["hit"]), score=row["final"], stage_scores=scores))
        return results, tokens

    async def Search(self, request, context):
        start = time.perf_counter()
        results, tokens = await self._search(_tenant(request), request.collection, request.query, request.options)
        return pb.SearchResponse(request_id=_rid(request), results=results, usage=_usage(tokens),
                                 timings=_timings(start))

    # ---------------------------------------------------------------------------------------- answers

    async def _contexts(self, request):
        """(contexts, retrieval_tokens, chat_request)."""
        r = self._r
        if not request.question.strip():
            raise InvalidArgument.for_field("question", "the question is empty")
        search = pb.SearchOptions()
        search.CopyFrom(request.search)
        if not search.HasField("top_k"):
            search.top_k = 5
        results, tokens = await self._search(_tenant(request), request.collection, request.question, search, "search")
        g = request.generation
        system = g.system_prompt or DEFAULT_SYSTEM_PROMPT
        max_new = g.max_new_tokens if g.HasField("max_new_tokens") else r.settings.answer_max_new_tokens
        budget = g.context_token_budget if g.HasField("context_token_budget") else r.settings.context_token_budget
        passages = [f"[{i + 1}] {res.chunk.title + ': ' if res.chunk.title else ''}{res.chunk.text}"
                    for i, res in enumerate(results)]
        selected = list(range(len(results)))
        if results:
            async with calling("tokenizer"):
                packed = await r.downstream.tokenizer.PackContext(tpb.PackContextRequest(
                    tokenizer=r.settings.answer_tokenizer, token_budget=budget, system_prompt=system,
                    question=request.question, chunks=passages))
            selected = sorted(packed.selected_indices)
        contexts = [results[i] for i in selected]
        sources = "\n\n".join(
            f"[{n + 1}] {c.chunk.title + ': ' if c.chunk.title else ''}{c.chunk.text}" for n, c in enumerate(contexts))
        user = f"Sources:\n{sources or '(none found)'}\n\nQuestion: {request.question}"
        sampling = ipb.SamplingParams(max_new_tokens=max_new,
                                      temperature=g.temperature if g.HasField("temperature") else 0.0)
        if g.HasField("top_p"):
            sampling.top_p = g.top_p
        chat = ipb.ChatRequest(
            model=g.model or r.settings.answer_model, sampling=sampling,
            messages=[ipb.ChatMessage(role="system", content=system), ipb.ChatMessage(role="user", content=user)],
        )
        return contexts, tokens, chat

    @staticmethod
    def citations(answer: str, contexts: list[pb.SearchResult]) -> list[pb.Citation]:
        """The [n] markers the model wrote, mapped to contexts; none: the top context covers the answer."""
        out: list[pb.Citation] = []
        seen: set[tuple[int, int]] = set()
        for m in _CITE.finditer(answer):
            n = int(m.group(1)) - 1
            if not 0 <= n < len(contexts):
                continue
            dot = answer.rfind(". ", 0, m.start())
            sentence_start = max(dot + 2 if dot >= 0 else 0, answer.rfind("\n", 0, m.start()) + 1)
            if (n, sentence_start) in seen:
                continue
            seen.add((n, sentence_start))
            c = contexts[n].chunk
            out.append(pb.Citation(document_id=c.document_id, chunk_id=c.chunk_id, context_index=n,
                                   answer_span=pb.TextSpan(start=sentence_start, end=m.end()), quote=c.text[:300]))
        if not out and contexts:
            c = contexts[0].chunk
            out.append(pb.Citation(document_id=c.document_id, chunk_id=c.chunk_id, context_index=0, quote=c.text[:300]))
        return out

    async def Answer(self, request, context):
        start = time.perf_counter()
        contexts, tokens, chat = await self._contexts(request)
        async with calling("inference"):
            reply = await self._r.downstream.inference.Chat(chat)
        choice = reply.choices[0] if reply.choices else ipb.ChatChoice()
        answer = choice.message.content
        return pb.AnswerResponse(
            request_id=_rid(request), answer=answer, citations=self.citations(answer, contexts), contexts=contexts,
            usage=reply.usage, retrieval_usage=_usage(tokens), timings=_timings(start), model=reply.model,
            truncated=choice.finish_reason == ipb.FINISH_REASON_LENGTH,
        )

    async def AnswerStream(self, request, context):
        start = time.perf_counter()
        rid = _rid(request)
        contexts, tokens, chat = await self._contexts(request)
        yield pb.AnswerStreamResponse(request_id=rid, contexts=pb.AnswerContexts(contexts=contexts,
                                                                                  retrieval_usage=_usage(tokens)))
        parts: list[str] = []
        try:
            async with calling("inference"):
                async for event in self._r.downstream.inference.ChatStream(chat):
                    kind = event.WhichOneof("event")
                    if kind == "delta" and event.delta.content:
                        parts.append(event.delta.content)
                        yield pb.AnswerStreamResponse(request_id=rid, delta=pb.AnswerDelta(text=event.delta.content))
                    elif kind == "error":
                        yield pb.AnswerStreamResponse(request_id=rid, error=event.error)
                        return
                    elif kind == "complete":
                        c = event.complete
                        finish = c.choices[0].finish_reason if c.choices else ipb.FINISH_REASON_STOP
                        yield pb.AnswerStreamResponse(request_id=rid, complete=pb.AnswerComplete(
                            citations=self.citations("".join(parts), contexts), usage=c.usage,
                            timings=_timings(start), model=c.model, truncated=finish == ipb.FINISH_REASON_LENGTH))
                        return
        except Exception as exc:  # noqa: BLE001 - output has started: report in-band
            if not isinstance(exc, GenAIError):
                logger.exception("answer stream %s failed", rid)
            yield pb.AnswerStreamResponse(request_id=rid, error=_error(exc))


def service_spec(retrieval: Deferred[Retrieval], max_message_bytes: int = 0) -> ServiceSpec:
    servicer = RetrievalServicer(retrieval, max_message_bytes)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, server))


__all__ = ["Retrieval", "RetrievalServicer", "service_spec"]
