"""Every use case of the service, built over one store and the ports: what the servicer calls.

The composition root (``__main__``) builds them once the store is open; tests build them the same way,
over a temporary store and real or fake ports. Each pipeline gets its collaborators explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from genai_retrieval import parsing
from genai_retrieval.answer import Answerer
from genai_retrieval.catalog import Catalog
from genai_retrieval.documents import Documents
from genai_retrieval.ingestion import Ingestion
from genai_retrieval.ports import Chat, ContextPacker, Embeddings
from genai_retrieval.search import Searcher
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import Store
from genai_retrieval.types import Chunking, ServiceInfo, Splitter
from genai_retrieval.vectors import Vectors


@dataclass(frozen=True)
class Pipelines:
    info: ServiceInfo
    catalog: Catalog
    documents: Documents
    ingestion: Ingestion
    searcher: Searcher
    answerer: Answerer

    @classmethod
    def build(cls, settings: RetrievalSettings, store: Store, embeddings: Embeddings, chat: Chat,
              packer: ContextPacker, max_message_bytes: int = 0) -> Pipelines:
        s = settings
        vectors = Vectors(embeddings, s.embed_batch_size)
        catalog = Catalog(store, embeddings, s)
        searcher = Searcher(catalog, store, vectors, embeddings, s)
        info = ServiceInfo(
            engine=store.engine, engine_version=store.engine_version, default_embedding_model=s.embedding_model,
            default_sparse_model=s.sparse_model, default_reranker_model=s.reranker_model,
            default_answer_model=s.answer_model,
            default_chunking=Chunking(s.chunk_size_tokens, s.chunk_overlap_tokens, Splitter.RECURSIVE),
            supported_mime_types=parsing.SUPPORTED, max_documents_per_request=s.max_documents_per_request,
            max_document_bytes=s.max_document_bytes, max_top_k=s.max_top_k, max_message_bytes=max_message_bytes,
        )
        return cls(
            info=info, catalog=catalog, documents=Documents(catalog, store),
            ingestion=Ingestion(catalog, store, vectors, s), searcher=searcher,
            answerer=Answerer(searcher, packer, chat, s),
        )
