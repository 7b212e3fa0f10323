"""The IngestDocuments pipeline: check and prepare every document, embed all chunks, then write them.

``parsing`` turns one document into text and ``chunking`` cuts it; this module runs a whole request over
a collection. A document whose content, metadata, title, source and chunking are unchanged is left
alone; a changed one has its chunks replaced. Nothing is written until every chunk is embedded, and a
failed write removes what the request wrote, so a failure leaves the collection as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from genai_core.errors import InvalidArgument
from genai_core.operations import Operation, Operations, Report

from genai_retrieval import chunking, filters, parsing, payloads
from genai_retrieval.catalog import Catalog
from genai_retrieval.chunking import ChunkText
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import PointData, Store
from genai_retrieval.types import (
    Chunking,
    ChunkingOptions,
    Collection,
    DocumentInput,
    DocumentResult,
    Ingested,
    IngestEvent,
    IngestProgress,
    IngestStage,
    Outcome,
    SparseVector,
)
from genai_retrieval.vectors import Vectors

logger = logging.getLogger(__name__)

INGEST_OPERATION = "retrieval.ingest"  # the kind of the long-running ingest (genai_core.operations)


@dataclass
class _Prepared:
    """One document on its way in: parsed, chunked and compared with what the collection holds."""

    document_id: str
    outcome: Outcome
    base: dict[str, Any]  # the payload every chunk of the document shares
    chunks: list[ChunkText]
    token_count: int
    chunk_count: int
    dense: list[list[float]] = dataclasses.field(default_factory=list)
    sparse: list[SparseVector] = dataclasses.field(default_factory=list)

    def points(self) -> list[PointData]:
        """One store point per chunk, each with a fresh id."""
        return [
            PointData(str(uuid.uuid4()), self.dense[j], self.sparse[j] if self.sparse else None,
                      payloads.chunk_payload(self.base, c.index, c.text, c.token_count, c.start, c.end,
                                             c.page_number))
            for j, c in enumerate(self.chunks)
        ]


class Ingestion:
    def __init__(self, catalog: Catalog, store: Store, vectors: Vectors, settings: RetrievalSettings) -> None:
        self._catalog = catalog
        self._store = store
        self._vectors = vectors
        self._settings = settings

    async def run(self, tenant: str, collection: str, documents: Sequence[DocumentInput],
                  options: ChunkingOptions) -> AsyncIterator[IngestEvent]:
        """Yields ``IngestProgress`` and ``DocumentResult`` events, finally ``Ingested``."""
        c = await self._catalog.get(tenant, collection)
        prepared = await self._prepare(c, documents, options)
        total = len(prepared)
        tokens = 0
        for p in prepared:  # embed everything first: a failure leaves the collection as it was
            yield IngestProgress(p.document_id, IngestStage.EMBEDDING, documents_done=0, documents_total=total,
                                 chunks_total=len(p.chunks))
            if p.chunks:
                got = await self._vectors.encode(c, [x.text for x in p.chunks], sparse=c.sparse_enabled)
                p.dense, p.sparse = got.dense, got.sparse
                tokens += got.prompt_tokens
        for done, p in enumerate(prepared):
            yield IngestProgress(p.document_id, IngestStage.INDEXING, documents_done=done, documents_total=total,
                                 chunks_done=len(p.chunks), chunks_total=len(p.chunks))
        await self._write(c, prepared)
        results = [DocumentResult(p.document_id, p.outcome, p.chunk_count, p.token_count) for p in prepared]
        for result in results:
            yield result
        await self._catalog.touch(c)
        yield Ingested(results, tokens)

    async def collect(self, tenant: str, collection: str, documents: Sequence[DocumentInput],
                      options: ChunkingOptions, report: Report | None = None) -> Ingested:
        """``run`` to the end: each progress event goes to ``report``; the summary is returned."""
        summary = None
        async for event in self.run(tenant, collection, documents, options):
            if isinstance(event, IngestProgress) and report is not None:
                report(event)
            elif isinstance(event, Ingested):
                summary = event
        assert summary is not None  # run always ends with Ingested or raises
        return summary

    async def start(self, operations: Operations, tenant: str, collection: str, documents: Sequence[DocumentInput],
                    options: ChunkingOptions) -> Operation:
        """The ingest as a long-running operation: an unknown collection is an error now (404), everything
        else (a bad document, a failed embedding) ends the operation with that error, writing nothing."""
        await self._catalog.get(tenant, collection)
        return operations.start(INGEST_OPERATION, tenant,
                                lambda report: self.collect(tenant, collection, documents, options, report))

    async def _prepare(self, c: Collection, documents: Sequence[DocumentInput],
                       options: ChunkingOptions) -> list[_Prepared]:
        """Check, parse and chunk every document, and decide whether it is created, replaced or unchanged.

        The owner of the rules about a request's documents (how many, ids, size, emptiness, content).
        """
        s = self._settings
        if not documents:
            raise InvalidArgument.for_field("documents", "send at least one document")
        if len(documents) > s.max_documents_per_request:
            raise InvalidArgument.for_field(
                "documents", f"{len(documents)} documents; at most {s.max_documents_per_request} per request")
        splitting = chunking.resolve(options, c.chunking, "chunking")
        seen: set[str] = set()
        out: list[_Prepared] = []
        for i, doc in enumerate(documents):
            doc_id = doc.document_id or uuid.uuid4().hex
            if doc_id in seen:
                raise InvalidArgument.for_field(f"documents[{i}].document_id", f"document id {doc_id!r} appears twice")
            seen.add(doc_id)
            out.append(await self._prepare_one(c, f"documents[{i}]", doc_id, doc, splitting))
        return out

    async def _prepare_one(self, c: Collection, path: str, doc_id: str, doc: DocumentInput,
                           splitting: Chunking) -> _Prepared:
        s = self._settings
        kind = "text" if doc.text is not None else "data" if doc.data is not None else None
        raw = doc.text.encode("utf-8") if doc.text is not None else doc.data or b""
        if len(raw) > s.max_document_bytes:
            raise InvalidArgument.for_field(
                f"{path}.{kind}", f"document {doc_id!r} has {len(raw)} bytes; the limit is {s.max_document_bytes}")
        if kind is None or not raw.strip():
            raise InvalidArgument.for_field(f"{path}.text", f"document {doc_id!r} is empty")
        try:
            parsed = parsing.parse(path, doc.mime_type, doc.text, doc.data)
        except InvalidArgument as exc:
            exc.message = f"document {doc_id!r}: {exc.message}"
            exc.args = (exc.message,)
            raise
        if not parsed.text.strip():
            raise InvalidArgument.for_field(f"{path}.text", f"document {doc_id!r} has no text")
        sha = hashlib.sha256(raw).hexdigest()
        metadata = dict(doc.metadata)
        existing = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, filters.first_chunk(doc_id))
        create_time = time.time()
        outcome = Outcome.CREATED
        old_doc: dict[str, Any] = {}
        if existing:
            old = existing[0].payload
            old_doc = old.get(payloads.DOC, {})
            create_time = old_doc.get("create_time", create_time)
            same = (old_doc.get("sha256") == sha and old.get(payloads.METADATA) == metadata
                    and old.get("title") == doc.title and old.get("source_uri") == doc.source_uri
                    and old_doc.get("chunking") == splitting.record())
            outcome = Outcome.UNCHANGED if same else Outcome.REPLACED
        if outcome is Outcome.UNCHANGED:
            chunks: list[ChunkText] = []
            chunk_count, tokens = int(old_doc.get("chunk_count", 0)), int(old_doc.get("token_count", 0))
        else:
            chunks = await asyncio.to_thread(chunking.cut, parsed, splitting, s.splitter_tokenizer_path)
            chunk_count, tokens = len(chunks), sum(x.token_count for x in chunks)
        base = payloads.document_base(
            doc_id, doc.title, doc.source_uri, parsed.mime_type, metadata,
            {"sha256": sha, "size": len(raw), "create_time": create_time, "update_time": time.time(),
             "chunk_count": chunk_count, "token_count": tokens, "chunking": splitting.record()})
        return _Prepared(doc_id, outcome, base, chunks, tokens, chunk_count)

    async def _write(self, c: Collection, prepared: list[_Prepared]) -> None:
        """Replace each changed document's chunks; on failure undo what this call wrote."""
        written: list[str] = []
        try:
            for p in prepared:
                if p.outcome is Outcome.UNCHANGED:
                    continue
                old = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, filters.documents([p.document_id]))
                new = p.points()
                await asyncio.to_thread(self._store.upsert, c.tenant, c.name, new)
                written.extend(x.id for x in new)
                await asyncio.to_thread(self._store.delete, c.tenant, c.name, [h.id for h in old])
        except Exception:
            logger.exception("writing to %s/%s failed; removing the new chunks", c.tenant, c.name)
            await asyncio.to_thread(self._store.delete, c.tenant, c.name, written)
            raise
