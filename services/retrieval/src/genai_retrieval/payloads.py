"""What the store keeps with each chunk, and the chunks and documents read back from it.

A chunk's payload holds the chunk (``chunk_index``, ``text``, span, page) and a copy of its document
(``document_id``, title, metadata, and ``doc`` with hash, size, times, counts and chunking); chunk 0
stands for the document in listings and counts. User metadata lives under ``metadata``, so a filter
key names a metadata field.

    >>> chunk("c1", {"document_id": "d1", "chunk_index": 0, "text": "Paris"}).text
    'Paris'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genai_retrieval.types import Chunk, Document, Span

DOCUMENT_ID = "document_id"
CHUNK_INDEX = "chunk_index"
METADATA = "metadata"
TEXT = "text"
DOC = "doc"  # the document's facts, copied into each of its chunks


def document_base(
    document_id: str, title: str, source_uri: str, mime_type: str, metadata: Mapping[str, Any], doc: dict[str, Any]
) -> dict[str, Any]:
    """The part of a payload every chunk of a document shares."""
    return {DOCUMENT_ID: document_id, "title": title, "source_uri": source_uri, "mime_type": mime_type,
            METADATA: dict(metadata), DOC: doc}


def chunk_payload(base: Mapping[str, Any], index: int, text: str, token_count: int, start: int, end: int,
                  page_number: int | None) -> dict[str, Any]:
    return {**base, CHUNK_INDEX: index, TEXT: text, "token_count": token_count, "span_start": start,
            "span_end": end, "page_number": page_number}


def chunk(chunk_id: str, p: Mapping[str, Any]) -> Chunk:
    page = p.get("page_number")
    return Chunk(
        chunk_id=chunk_id, document_id=p.get(DOCUMENT_ID, ""), index=int(p.get(CHUNK_INDEX, 0)),
        text=p.get(TEXT, ""), token_count=int(p.get("token_count", 0)),
        span=Span(int(p.get("span_start", 0)), int(p.get("span_end", 0))),
        page_number=int(page) if page is not None else None, metadata=p.get(METADATA) or {},
        title=p.get("title", ""), source_uri=p.get("source_uri", ""),
    )


def document(p: Mapping[str, Any], chunks: tuple[Chunk, ...] = ()) -> Document:
    """The document a chunk's payload carries a copy of."""
    d = p.get(DOC, {})
    return Document(
        document_id=p.get(DOCUMENT_ID, ""), title=p.get("title", ""), mime_type=p.get("mime_type", ""),
        source_uri=p.get("source_uri", ""), metadata=p.get(METADATA) or {},
        chunk_count=int(d.get("chunk_count", 0)), token_count=int(d.get("token_count", 0)),
        size_bytes=int(d.get("size", 0)), content_sha256=d.get("sha256", ""),
        create_time=d.get("create_time", 0), update_time=d.get("update_time", 0), chunks=chunks,
    )
