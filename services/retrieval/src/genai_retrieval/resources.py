"""The API's resources built from what the store keeps: collection metadata, chunk payloads, token usage.

A chunk's payload holds the chunk (``chunk_index``, ``text``, span, page) and a copy of its document
(``document_id``, title, metadata, and ``doc`` with hash, size, times and counts); chunk 0 stands for the
document in listings and counts.

    >>> chunk(Hit("c1", 0.5, {"document_id": "d1", "chunk_index": 0, "text": "Paris"})).text
    'Paris'
"""

from __future__ import annotations

from typing import Any

from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.type.v1 import usage_pb2
from google.protobuf import struct_pb2, timestamp_pb2

from genai_retrieval import filters as F
from genai_retrieval.store import Hit

CHUNK_INDEX = "chunk_index"
DISTANCES = {pb.DISTANCE_UNSPECIFIED: "cosine", pb.DISTANCE_COSINE: "cosine", pb.DISTANCE_DOT: "dot",
             pb.DISTANCE_EUCLID: "euclid", pb.DISTANCE_MANHATTAN: "manhattan"}
SPLITTERS = {pb.SPLITTER_TOKEN: "token", pb.SPLITTER_RECURSIVE: "recursive", pb.SPLITTER_SENTENCE: "sentence",
             pb.SPLITTER_MARKDOWN: "markdown"}
_DISTANCE_PB = {v: k for k, v in DISTANCES.items() if k != pb.DISTANCE_UNSPECIFIED}
_SPLITTER_PB = {v: k for k, v in SPLITTERS.items()}


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def usage(prompt: int = 0, completion: int = 0) -> usage_pb2.Usage:
    return usage_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def collection(meta: dict[str, Any], documents: int = 0, chunks: int = 0) -> pb.Collection:
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
        create_time=timestamp(meta["create_time"]), update_time=timestamp(meta["update_time"]),
    )


def chunk(h: Hit) -> pb.Chunk:
    p = h.payload
    out = pb.Chunk(
        chunk_id=h.id, document_id=p.get(F.DOCUMENT_ID, ""), index=int(p.get(CHUNK_INDEX, 0)),
        text=p.get("text", ""), token_count=int(p.get("token_count", 0)),
        span=pb.TextSpan(start=int(p.get("span_start", 0)), end=int(p.get("span_end", 0))),
        metadata=_struct(p.get(F.METADATA) or {}), title=p.get("title", ""), source_uri=p.get("source_uri", ""),
    )
    if p.get("page_number") is not None:
        out.page_number = int(p["page_number"])
    return out


def document(h: Hit) -> pb.Document:
    p = h.payload
    d = p.get("doc", {})
    return pb.Document(
        document_id=p.get(F.DOCUMENT_ID, ""), title=p.get("title", ""), mime_type=p.get("mime_type", ""),
        source_uri=p.get("source_uri", ""), metadata=_struct(p.get(F.METADATA) or {}),
        chunk_count=int(d.get("chunk_count", 0)), token_count=int(d.get("token_count", 0)),
        size_bytes=int(d.get("size", 0)), content_sha256=d.get("sha256", ""),
        create_time=timestamp(d.get("create_time", 0)), update_time=timestamp(d.get("update_time", 0)),
    )
