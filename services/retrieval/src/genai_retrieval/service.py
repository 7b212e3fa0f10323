"""The retrieval domain: collections and documents over the vector store, and the entry points of the
ingest (``ingestion.py``), search (``search.py``) and answer (``answer.py``) pipelines. The gRPC servicer
is a thin adapter over ``Retrieval``; nothing here imports grpc (the downstream clients raise domain errors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from genai.embedding.v1 import embedding_service_pb2 as epb
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_core.errors import InvalidArgument, NotFound

from genai_retrieval import answer, ingestion, search
from genai_retrieval import filters as F
from genai_retrieval.answer import Answered
from genai_retrieval.resources import CHUNK_INDEX, DISTANCES
from genai_retrieval.search import Searched
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import Hit, Store, check_name

if TYPE_CHECKING:
    from genai_retrieval.downstream import Downstream  # grpc clients, injected by the composition root

DEFAULT_PAGE = 100
_FIRST_CHUNKS = F.Filter(must=[F.Match(CHUNK_INDEX, 0)])  # one point per document

T = TypeVar("T")


def paginate(items: list[T], page_token: str, page_size: int) -> tuple[list[T], str]:
    """One page of ``items`` and the next page's token ("" after the last); tokens are offsets."""
    if page_token and not page_token.isdigit():
        raise InvalidArgument.for_field("page_token", "pass the next_page_token of a previous response")
    start = int(page_token) if page_token else 0
    size = page_size or DEFAULT_PAGE
    return items[start : start + size], str(start + size) if start + size < len(items) else ""


class Retrieval:
    """The service's state (settings, the vector store, the downstream clients) and what the servicer calls."""

    def __init__(self, settings: RetrievalSettings, store: Store, downstream: Downstream) -> None:
        self.settings = settings
        self.store = store
        self.downstream = downstream

    async def run(self, fn, *args):
        """``fn(*args)`` off the event loop: the stores block."""
        return await asyncio.to_thread(fn, *args)

    async def meta(self, tenant: str, name: str) -> dict[str, Any]:
        meta = await self.run(self.store.get, tenant, name) if name else None
        if meta is None:
            raise NotFound(f"collection {name!r} not found", resource_type="collection", resource_name=name)
        return meta

    async def close(self) -> None:
        await self.run(self.store.close)
        await self.downstream.close()

    async def embed(self, meta: dict[str, Any], texts: list[str], sparse: bool, dense: bool = True):
        """Dense and sparse vectors of ``texts`` in batches; (dense, sparse, prompt_tokens)."""
        kind = epb.EMBEDDING_KIND_BOTH if sparse and dense else (
            epb.EMBEDDING_KIND_SPARSE if sparse else epb.EMBEDDING_KIND_DENSE)
        options = epb.EmbedOptions(kind=kind, sparse_model=meta.get("sparse_model", "") if sparse else "")
        if meta["dimensions"] != meta.get("model_dimensions", meta["dimensions"]):
            options.dimensions = meta["dimensions"]
        dense_out: list[list[float]] = []
        sparse_out: list[tuple[list[int], list[float]]] = []
        tokens = 0
        step = self.settings.embed_batch_size
        for i in range(0, len(texts), step):
            reply = await self.downstream.embedding.Embed(epb.EmbedRequest(
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

    # ------------------------------------------------------------------------------------- collections

    async def create_collection(
        self, tenant: str, name: str, *, description: str, embedding_model: str, vector_config: pb.VectorConfig,
        sparse_enabled: bool, sparse_model: str, labels: Mapping[str, str], default_chunking: pb.ChunkingOptions,
    ) -> dict[str, Any]:
        """Create the collection; its metadata. The embedding model's dimensions are the default."""
        name = check_name(name, "name")
        if vector_config.distance not in DISTANCES:
            raise InvalidArgument.for_field("vector_config.distance", "unknown distance")
        info = await self.downstream.embedding.GetInfo(
            epb.GetInfoRequest(model=embedding_model or self.settings.embedding_model))
        dims = vector_config.dimensions or info.dimensions
        if dims != info.dimensions and dims not in info.supported_dimensions:
            raise InvalidArgument.for_field(
                "vector_config.dimensions",
                f"{dims} does not match embedding model {info.model!r}, which has {info.dimensions} dimensions",
            )
        now = time.time()
        base = {"chunk_size": self.settings.chunk_size_tokens, "chunk_overlap": self.settings.chunk_overlap_tokens,
                "splitter": ""}
        meta = {
            "tenant": tenant, "name": name, "description": description, "embedding_model": info.model,
            "embedding_model_revision": info.revision, "dimensions": dims,
            "model_dimensions": info.dimensions, "distance": DISTANCES[vector_config.distance],
            "sparse_enabled": sparse_enabled,
            "sparse_model": (sparse_model or self.settings.sparse_model) if sparse_enabled else "",
            "labels": dict(labels), "create_time": now, "update_time": now,
            **ingestion.chunking(default_chunking, base, "default_chunking"),
        }
        await self.run(self.store.create, tenant, name, meta)
        return meta

    async def counts(self, meta: dict[str, Any]) -> tuple[int, int]:
        """(documents, chunks) in the collection."""
        chunks = await self.run(self.store.count, meta["tenant"], meta["name"], None)
        docs = await self.run(self.store.count, meta["tenant"], meta["name"], _FIRST_CHUNKS)
        return docs, chunks

    async def list_collections(self, tenant: str, page_token: str, page_size: int) -> tuple[list[dict[str, Any]], str]:
        """One page of the tenant's collections' metadata, and the next page's token."""
        return paginate(await self.run(self.store.list, tenant), page_token, page_size)

    async def delete_collection(self, tenant: str, name: str) -> int:
        """Drop the collection; how many documents it held."""
        meta = await self.meta(tenant, name)
        docs = await self.run(self.store.count, tenant, meta["name"], _FIRST_CHUNKS)
        await self.run(self.store.drop, tenant, meta["name"])
        return docs

    # --------------------------------------------------------------------------------------- documents

    async def document_chunks(self, tenant: str, collection: str, document_id: str) -> list[Hit]:
        """The document's chunks in order; the first one describes the document."""
        meta = await self.meta(tenant, collection)
        hits = await self.run(self.store.scroll, tenant, meta["name"], F.documents([document_id]))
        if not document_id or not hits:
            raise NotFound(f"document {document_id!r} not found", resource_type="document", resource_name=document_id)
        hits.sort(key=lambda h: h.payload.get(CHUNK_INDEX, 0))
        return hits

    async def list_documents(self, tenant: str, collection: str, flt: pb.Filter | None, page_token: str,
                             page_size: int) -> tuple[list[Hit], str]:
        """One page of first chunks (one per document, by document id) matching ``flt``; the next page's token."""
        meta = await self.meta(tenant, collection)
        flt = F.combine(_FIRST_CHUNKS, F.from_proto(flt) if flt is not None else None)
        hits = sorted(await self.run(self.store.scroll, tenant, meta["name"], flt),
                      key=lambda h: h.payload.get(F.DOCUMENT_ID, ""))
        return paginate(hits, page_token, page_size)

    async def delete_documents(self, tenant: str, collection: str, document_ids: Sequence[str] | None,
                               flt: pb.Filter | None) -> tuple[int, int]:
        """Delete the named documents, or those with a chunk matching ``flt``; (documents, chunks) deleted."""
        meta = await self.meta(tenant, collection)
        if document_ids is not None:
            if not document_ids:
                raise InvalidArgument.for_field("document_ids", "name at least one document id")
            selector = F.documents(list(document_ids))
        elif flt is not None:
            selector = F.from_proto(flt)
            if selector.empty():
                raise InvalidArgument.for_field(
                    "filter", "set at least one condition, so nothing is deleted by accident")
        else:
            raise InvalidArgument.for_field("document_ids", "set document_ids or filter")
        hits = await self.run(self.store.scroll, tenant, meta["name"], selector)
        # A filter on metadata matches every chunk of a document, since each chunk carries the metadata.
        doc_ids = sorted({h.payload.get(F.DOCUMENT_ID) for h in hits})
        all_hits = await self.run(self.store.scroll, tenant, meta["name"], F.documents(doc_ids)) if doc_ids else []
        await self.run(self.store.delete, tenant, meta["name"], [h.id for h in all_hits])
        if doc_ids:
            meta["update_time"] = time.time()
            await self.run(self.store.update_meta, tenant, meta["name"], meta)
        return len(doc_ids), len(all_hits)

    # --------------------------------------------------------------------------------------- pipelines

    def ingest(self, tenant: str, collection: str, documents: Sequence[pb.DocumentInput],
               chunking: pb.ChunkingOptions) -> AsyncIterator[tuple[str, Any]]:
        """See ``ingestion.ingest_documents``."""
        return ingestion.ingest_documents(self, tenant, collection, documents, chunking)

    async def search(self, tenant: str, collection: str, query: str, options: pb.SearchOptions,
                     path: str = "options") -> Searched:
        """See ``search.search``."""
        return await search.search(self, tenant, collection, query, options, path)

    async def answer(self, tenant: str, collection: str, question: str, options: pb.SearchOptions,
                     generation: pb.GenerationOptions) -> Answered:
        """See ``answer.answer``."""
        return await answer.answer(self, tenant, collection, question, options, generation)

    def answer_stream(self, tenant: str, collection: str, question: str, options: pb.SearchOptions,
                      generation: pb.GenerationOptions) -> AsyncIterator[tuple[str, Any]]:
        """See ``answer.answer_stream``."""
        return answer.answer_stream(self, tenant, collection, question, options, generation)
