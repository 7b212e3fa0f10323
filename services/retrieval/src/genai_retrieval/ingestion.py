"""The IngestDocuments pipeline: check and prepare every document, embed all chunks, then write them.

``ingest.py`` turns one document into text chunks; this module runs a whole request over a collection.
A document whose content, metadata, title, source and chunking are unchanged is left alone; a changed one
has its chunks replaced. Nothing is written until every chunk is embedded, and a failed write removes what
the request wrote, so a failure leaves the collection as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_core.errors import InvalidArgument
from genai_core.structs import struct_to_dict

from genai_retrieval import filters as F
from genai_retrieval import ingest
from genai_retrieval.resources import CHUNK_INDEX, SPLITTERS
from genai_retrieval.store import PointData

if TYPE_CHECKING:
    from genai_retrieval.service import Retrieval

logger = logging.getLogger(__name__)


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


@dataclass
class Ingested:
    results: list[pb.DocumentResult]
    tokens: int  # embedding prompt tokens


def chunking(options: pb.ChunkingOptions, base: dict[str, Any], path: str) -> dict[str, Any]:
    """The chunking to use: ``options`` where set, else ``base`` (a collection's metadata or defaults)."""
    size = options.chunk_size_tokens if options.HasField("chunk_size_tokens") else base["chunk_size"]
    overlap = options.chunk_overlap_tokens if options.HasField("chunk_overlap_tokens") else base["chunk_overlap"]
    splitter = SPLITTERS.get(options.splitter, base.get("splitter", ""))
    if size < 8 or size > 8192:
        raise InvalidArgument.for_field(f"{path}.chunk_size_tokens", "must be between 8 and 8192")
    if overlap >= size:
        raise InvalidArgument.for_field(f"{path}.chunk_overlap_tokens", "must be smaller than chunk_size_tokens")
    return {"chunk_size": size, "chunk_overlap": overlap, "splitter": splitter}


async def prepare(r: Retrieval, meta: dict[str, Any], tenant: str, documents: Sequence[pb.DocumentInput],
                  options: pb.ChunkingOptions) -> list[Prepared]:
    """Check, parse and chunk every document, and decide whether it is created, replaced or unchanged."""
    s = r.settings
    if not documents:
        raise InvalidArgument.for_field("documents", "send at least one document")
    if len(documents) > s.max_documents_per_request:
        raise InvalidArgument.for_field(
            "documents", f"{len(documents)} documents; at most {s.max_documents_per_request} per request")
    splitting = chunking(options, meta, "chunking")
    seen: set[str] = set()
    out: list[Prepared] = []
    for i, doc in enumerate(documents):
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
                    and old.get("doc", {}).get("chunking") == splitting)
            outcome = pb.DocumentResult.OUTCOME_UNCHANGED if same else pb.DocumentResult.OUTCOME_REPLACED
        chunks = [] if outcome == pb.DocumentResult.OUTCOME_UNCHANGED else await asyncio.to_thread(
            ingest.chunk, parsed, splitting["chunk_size"], splitting["chunk_overlap"], splitting["splitter"],
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
                    "chunk_count": chunks_count, "token_count": tokens, "chunking": splitting},
        }
        out.append(Prepared(i, doc_id, outcome, base, chunks, create_time, token_count=tokens))
    return out


def points(p: Prepared) -> list[PointData]:
    """The store points of a prepared and embedded document: one per chunk, with a fresh id."""
    out = []
    for j, c in enumerate(p.chunks):
        payload = dict(p.payload_base)
        payload.update({CHUNK_INDEX: c.index, "text": c.text, "token_count": c.token_count,
                        "span_start": c.start, "span_end": c.end, "page_number": c.page_number})
        out.append(PointData(str(uuid.uuid4()), p.dense[j], p.sparse[j] if p.sparse else None, payload))
    return out


async def write(r: Retrieval, tenant: str, name: str, prepared: list[Prepared]) -> None:
    """Replace each changed document's chunks; on failure undo what this call wrote."""
    written: list[str] = []
    try:
        for p in prepared:
            if p.outcome == pb.DocumentResult.OUTCOME_UNCHANGED:
                continue
            old = await r.run(r.store.scroll, tenant, name, F.documents([p.document_id]))
            new = points(p)
            await r.run(r.store.upsert, tenant, name, new)
            written.extend(x.id for x in new)
            await r.run(r.store.delete, tenant, name, [h.id for h in old])
    except Exception:
        logger.exception("writing to %s/%s failed; removing the new chunks", tenant, name)
        await r.run(r.store.delete, tenant, name, written)
        raise


async def ingest_documents(r: Retrieval, tenant: str, collection: str, documents: Sequence[pb.DocumentInput],
                           options: pb.ChunkingOptions) -> AsyncIterator[tuple[str, Any]]:
    """Yields ("progress", IngestProgress), ("document", DocumentResult), finally ("complete", Ingested)."""
    meta = await r.meta(tenant, collection)
    prepared = await prepare(r, meta, tenant, documents, options)
    total = len(prepared)
    tokens = 0
    for p in prepared:  # embed everything first: a failure leaves the collection as it was
        yield "progress", pb.IngestProgress(document_id=p.document_id, stage=pb.IngestProgress.STAGE_EMBEDDING,
                                            documents_done=0, documents_total=total, chunks_total=len(p.chunks))
        if p.chunks:
            p.dense, sparse, used = await r.embed(meta, [c.text for c in p.chunks], meta["sparse_enabled"])
            p.sparse = sparse or None
            tokens += used
    results = []
    for done, p in enumerate(prepared):
        yield "progress", pb.IngestProgress(document_id=p.document_id, stage=pb.IngestProgress.STAGE_INDEXING,
                                            documents_done=done, documents_total=total,
                                            chunks_done=len(p.chunks), chunks_total=len(p.chunks))
    await write(r, tenant, meta["name"], prepared)
    for p in prepared:
        result = pb.DocumentResult(document_id=p.document_id, outcome=p.outcome,
                                   chunk_count=int(p.payload_base["doc"]["chunk_count"]), token_count=p.token_count)
        results.append(result)
        yield "document", result
    meta["update_time"] = time.time()
    await r.run(r.store.update_meta, tenant, meta["name"], meta)
    yield "complete", Ingested(results, tokens)
