"""Documents of a collection: read one with its chunks, list them, delete them by id or by filter.

A document is the chunks that share its ``document_id``; its first chunk stands for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from genai_core.errors import InvalidArgument, NotFound

from genai_retrieval import filters, payloads
from genai_retrieval.catalog import Catalog
from genai_retrieval.paging import paginate
from genai_retrieval.store import Store
from genai_retrieval.types import Deleted, Document, Filter, Page


class Documents:
    def __init__(self, catalog: Catalog, store: Store) -> None:
        self._catalog = catalog
        self._store = store

    async def get(self, tenant: str, collection: str, document_id: str, include_chunks: bool = False) -> Document:
        c = await self._catalog.get(tenant, collection)
        hits = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, filters.documents([document_id]))
        if not document_id or not hits:
            raise NotFound(f"document {document_id!r} not found", resource_type="document", resource_name=document_id)
        hits.sort(key=lambda h: h.payload.get(payloads.CHUNK_INDEX, 0))
        chunks = tuple(payloads.chunk(h.id, h.payload) for h in hits) if include_chunks else ()
        return payloads.document(hits[0].payload, chunks)

    async def list(self, tenant: str, collection: str, flt: Filter | None, page_token: str,
                   page_size: int) -> Page[Document]:
        """One page of the documents with a chunk matching ``flt``, by document id."""
        c = await self._catalog.get(tenant, collection)
        firsts = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, filters.combine(filters.FIRST_CHUNKS, flt))
        firsts.sort(key=lambda h: h.payload.get(payloads.DOCUMENT_ID, ""))
        page = paginate(firsts, page_token, page_size)
        return Page([payloads.document(h.payload) for h in page.items], page.next_page_token)

    async def delete(self, tenant: str, collection: str, document_ids: Sequence[str] | None,
                     flt: Filter | None) -> Deleted:
        """Delete the named documents, or every document with a chunk matching ``flt`` (one of the two).

        The owner of the selector's rules; ``convert`` only says which one the request set.
        """
        c = await self._catalog.get(tenant, collection)
        if document_ids is not None:
            if not document_ids:
                raise InvalidArgument.for_field("document_ids", "name at least one document id")
            selector = filters.documents(list(document_ids))
        elif flt is not None:
            if flt.empty():
                raise InvalidArgument.for_field("filter", "set at least one condition, so nothing is deleted by accident")
            selector = flt
        else:
            raise InvalidArgument.for_field("document_ids", "set document_ids or filter")
        hits = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, selector)
        # A filter on metadata matches every chunk of a document, since each chunk carries the metadata.
        doc_ids = sorted({h.payload.get(payloads.DOCUMENT_ID) for h in hits})
        every = await asyncio.to_thread(self._store.scroll, c.tenant, c.name, filters.documents(doc_ids)) if doc_ids else []
        await asyncio.to_thread(self._store.delete, c.tenant, c.name, [h.id for h in every])
        if doc_ids:
            await self._catalog.touch(c)
        return Deleted(len(doc_ids), len(every))
