"""The collection catalogue: each tenant's collections, kept as records in the store.

``Catalog.get`` is how every pipeline finds a collection, so the tenant-name rule and "collection not
found" are checked here once. A collection's record is a JSON object (the store's boundary); its keys
are those of existing data directories, so they stay as they are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from genai_core.errors import InvalidArgument, NotFound

from genai_retrieval.chunking import resolve
from genai_retrieval.filters import FIRST_CHUNKS
from genai_retrieval.paging import paginate
from genai_retrieval.ports import Embeddings
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import Store, check_name
from genai_retrieval.types import Chunking, Collection, CollectionSpec, Counts, Distance, Page

DEFAULT_TENANT = "default"  # the tenant of a request that names none
DEFAULT_DISTANCE = Distance.COSINE


def record(c: Collection) -> dict[str, Any]:
    """The collection as the store keeps it."""
    return {
        "tenant": c.tenant, "name": c.name, "description": c.description, "embedding_model": c.embedding_model,
        "embedding_model_revision": c.embedding_model_revision, "dimensions": c.dimensions,
        "model_dimensions": c.model_dimensions, "distance": c.distance.value, "sparse_enabled": c.sparse_enabled,
        "sparse_model": c.sparse_model, "labels": dict(c.labels), "create_time": c.create_time,
        "update_time": c.update_time, **c.chunking.record(),
    }


def from_record(r: dict[str, Any]) -> Collection:
    return Collection(
        tenant=r["tenant"], name=r["name"], description=r.get("description", ""),
        embedding_model=r["embedding_model"], embedding_model_revision=r.get("embedding_model_revision", ""),
        dimensions=int(r["dimensions"]), model_dimensions=r.get("model_dimensions"),
        distance=Distance(r["distance"]), sparse_enabled=bool(r["sparse_enabled"]),
        sparse_model=r.get("sparse_model", ""), labels=r.get("labels", {}), chunking=Chunking.from_record(r),
        create_time=r["create_time"], update_time=r["update_time"],
    )


class Catalog:
    def __init__(self, store: Store, embeddings: Embeddings, settings: RetrievalSettings) -> None:
        self._store = store
        self._embeddings = embeddings
        self._settings = settings

    @staticmethod
    def _tenant(tenant: str) -> str:
        # The owner of the tenant rule: every request reaches its tenant through get, list or create.
        return check_name(tenant or DEFAULT_TENANT, "tenant")

    async def get(self, tenant: str, name: str) -> Collection:
        """The collection ``name`` of ``tenant``; NOT_FOUND when it does not exist (a malformed name included).
        The pipelines use the returned collection's ``tenant``, the checked one."""
        tenant = self._tenant(tenant)
        found = await asyncio.to_thread(self._store.get, tenant, name) if name else None
        if found is None:
            raise NotFound(f"collection {name!r} not found", resource_type="collection", resource_name=name)
        return from_record(found)

    async def create(self, tenant: str, spec: CollectionSpec) -> Collection:
        """Create the collection; the embedding model's dimensions are the default."""
        tenant = self._tenant(tenant)
        check_name(spec.name, "name")  # owner of the collection-name rule for new collections
        s = self._settings
        model = await self._embeddings.model(spec.embedding_model or s.embedding_model)
        dims = spec.vector_config.dimensions or model.dimensions
        if dims != model.dimensions and dims not in model.supported_dimensions:
            raise InvalidArgument.for_field(
                "vector_config.dimensions",
                f"{dims} does not match embedding model {model.model!r}, which has {model.dimensions} dimensions",
            )
        now = time.time()
        collection = Collection(
            tenant=tenant, name=spec.name, description=spec.description, embedding_model=model.model,
            embedding_model_revision=model.revision, dimensions=dims, model_dimensions=model.dimensions,
            distance=spec.vector_config.distance or DEFAULT_DISTANCE, sparse_enabled=spec.sparse_enabled,
            sparse_model=(spec.sparse_model or s.sparse_model) if spec.sparse_enabled else "",
            labels=dict(spec.labels), create_time=now, update_time=now,
            chunking=resolve(spec.default_chunking, Chunking(s.chunk_size_tokens, s.chunk_overlap_tokens),
                             "default_chunking"),
        )
        await asyncio.to_thread(self._store.create, tenant, spec.name, record(collection))
        return collection

    async def list(self, tenant: str, page_token: str, page_size: int) -> Page[Collection]:
        """One page of the tenant's collections, by name."""
        tenant = self._tenant(tenant)
        records = await asyncio.to_thread(self._store.list, tenant)
        return paginate([from_record(r) for r in records], page_token, page_size)

    async def counts(self, c: Collection) -> Counts:
        chunks = await asyncio.to_thread(self._store.count, c.tenant, c.name, None)
        documents = await asyncio.to_thread(self._store.count, c.tenant, c.name, FIRST_CHUNKS)
        return Counts(documents, chunks)

    async def delete(self, tenant: str, name: str) -> int:
        """Drop the collection; how many documents it held."""
        c = await self.get(tenant, name)
        documents = await asyncio.to_thread(self._store.count, c.tenant, c.name, FIRST_CHUNKS)
        await asyncio.to_thread(self._store.drop, c.tenant, c.name)
        return documents

    async def touch(self, c: Collection) -> Collection:
        """Record that the collection's documents changed now."""
        touched = dataclasses.replace(c, update_time=time.time())
        await asyncio.to_thread(self._store.update_meta, c.tenant, c.name, record(touched))
        return touched
