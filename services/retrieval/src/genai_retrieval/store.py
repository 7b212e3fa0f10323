"""The vector store behind collections: a Protocol and two implementations chosen by ``qdrant_url``.

* ``EdgeStore``: embedded Qdrant Edge, one shard per collection directory under
  ``data_dir/<tenant>/<collection>/shard`` with ``collection.json`` next to it; HNSW is built by
  ``optimize()`` in a background thread after ingest bursts, never on the request path.
* ``ClientStore``: qdrant-client against a server (``http://...``) or in local mode (``local:<path>``).

Both store a dense named vector ``dense`` and, when enabled, a sparse named vector ``sparse`` with the
IDF modifier (the embedding service's sparse weights carry no IDF: it belongs to the index).
Calls are blocking; the pipelines run them in threads.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genai_core.errors import AlreadyExists, InvalidArgument, NotFound
from genai_core.limits import RETRIEVAL

from genai_retrieval.types import Filter, Match, MatchAny, Range, SparseVector

logger = logging.getLogger(__name__)

NAME_RE = re.compile(RETRIEVAL.name_pattern)  # tenants and collections; the gateway's schema states it too
DENSE, SPARSE = "dense", "sparse"
DISTANCES = ("cosine", "dot", "euclid", "manhattan")


@dataclass
class PointData:
    id: str
    dense: list[float]
    sparse: SparseVector | None
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


def check_name(value: str, field: str) -> str:
    """``value``, when it can name a tenant or a collection (it becomes a directory or a Qdrant name).

    ``catalog.Catalog`` owns this rule for requests; a store calls it again only as a guard before it
    builds a path or a Qdrant collection name from a string.
    """
    if not NAME_RE.match(value):
        raise InvalidArgument.for_field(field, "use 1 to 63 lowercase letters, digits, '-' and '_', starting with a letter or digit")
    return value


class Store(Protocol):
    engine: str
    engine_version: str

    def create(self, tenant: str, name: str, meta: dict[str, Any]) -> None: ...
    def get(self, tenant: str, name: str) -> dict[str, Any] | None: ...
    def update_meta(self, tenant: str, name: str, meta: dict[str, Any]) -> None: ...
    def list(self, tenant: str) -> list[dict[str, Any]]: ...
    def drop(self, tenant: str, name: str) -> bool: ...
    def upsert(self, tenant: str, name: str, points: list[PointData]) -> None: ...
    def delete(self, tenant: str, name: str, ids: list[str]) -> None: ...
    def scroll(self, tenant: str, name: str, flt: Filter | None) -> list[Hit]: ...
    def count(self, tenant: str, name: str, flt: Filter | None) -> int: ...
    def payloads(self, tenant: str, name: str, ids: list[str]) -> dict[str, dict[str, Any]]: ...
    def search(
        self, tenant: str, name: str, using: str, vector: Any, limit: int, flt: Filter | None,
        with_payload: bool = True,
    ) -> list[Hit]: ...
    def close(self) -> None: ...


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------------------- Edge


def _edge_filter(f: Filter | None):
    import qdrant_edge as qe

    def cond(c):
        if isinstance(c, Filter):
            return _edge_filter(c)
        if isinstance(c, Match):
            return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
        if isinstance(c, MatchAny):
            return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.values)))
        if isinstance(c, Range):
            cls = qe.RangeDateTime if c.datetime else qe.RangeFloat
            return qe.FieldCondition(key=c.key, range=cls(gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte))
        raise TypeError(c)

    if f is None or f.empty():
        return None
    return qe.Filter(
        must=[cond(c) for c in f.must] or None,
        should=[cond(c) for c in f.should] or None,
        must_not=[cond(c) for c in f.must_not] or None,
    )


class _Shard:
    def __init__(self, shard) -> None:
        self.shard = shard
        self.lock = threading.Lock()  # one writer at a time
        self.pending = 0  # points written since the last optimize
        self.optimizing = False


class EdgeStore:
    """Embedded Qdrant Edge: one shard per collection; HNSW built in the background."""

    engine = "qdrant-edge"

    def __init__(self, data_dir: Path, optimize_after_points: int = 1000) -> None:
        self.engine_version = _version("qdrant-edge-py")
        self._root = Path(data_dir)
        self._root.mkdir(parents=True, exist_ok=True)
        self._optimize_after = optimize_after_points
        self._shards: dict[tuple[str, str], _Shard] = {}
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def _dir(self, tenant: str, name: str) -> Path:
        return self._root / check_name(tenant, "tenant") / check_name(name, "collection")

    def _meta_path(self, tenant: str, name: str) -> Path:
        return self._dir(tenant, name) / "collection.json"

    def _shard(self, tenant: str, name: str) -> _Shard:
        import qdrant_edge as qe

        key = (tenant, name)
        with self._lock:
            if key not in self._shards:
                path = self._dir(tenant, name) / "shard"
                if not path.exists():
                    raise NotFound(f"collection {name!r} not found", resource_type="collection", resource_name=name)
                self._shards[key] = _Shard(qe.EdgeShard.load(str(path)))
            return self._shards[key]

    def create(self, tenant: str, name: str, meta: dict[str, Any]) -> None:
        import qdrant_edge as qe

        directory = self._dir(tenant, name)
        with self._lock:
            if (directory / "collection.json").exists():
                raise AlreadyExists(f"collection {name!r} exists already", resource_type="collection", resource_name=name)
            if directory.exists():
                shutil.rmtree(directory)  # a half-created leftover
            directory.mkdir(parents=True)
            distance = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid,
                        "manhattan": qe.Distance.Manhattan}[meta["distance"]]
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=int(meta["dimensions"]), distance=distance)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                if meta.get("sparse_enabled") else None,
                hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10000),
            )
            self._shards[(tenant, name)] = _Shard(qe.EdgeShard.create(str(directory / "shard"), config))
            self._write_meta(directory / "collection.json", meta)

    @staticmethod
    def _write_meta(path: Path, meta: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, sort_keys=True))
        tmp.replace(path)

    def get(self, tenant: str, name: str) -> dict[str, Any] | None:
        try:
            path = self._meta_path(tenant, name)
        except InvalidArgument:
            return None
        return json.loads(path.read_text()) if path.exists() else None

    def update_meta(self, tenant: str, name: str, meta: dict[str, Any]) -> None:
        self._write_meta(self._meta_path(tenant, name), meta)

    def list(self, tenant: str) -> list[dict[str, Any]]:
        base = self._root / check_name(tenant, "tenant")
        if not base.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(base.glob("*/collection.json"))]

    def drop(self, tenant: str, name: str) -> bool:
        directory = self._dir(tenant, name)
        with self._lock:
            shard = self._shards.pop((tenant, name), None)
            if shard is not None:
                with shard.lock:
                    shard.shard.close()
            if not directory.exists():
                return False
            shutil.rmtree(directory)
            return True

    def upsert(self, tenant: str, name: str, points: list[PointData]) -> None:
        import qdrant_edge as qe

        s = self._shard(tenant, name)
        edge_points = []
        for p in points:
            vector: dict[str, Any] = {DENSE: p.dense}
            if p.sparse is not None:
                vector[SPARSE] = qe.SparseVector(list(p.sparse[0]), list(p.sparse[1]))
            edge_points.append(qe.Point(p.id, vector, p.payload))
        with s.lock:
            for i in range(0, len(edge_points), 256):
                s.shard.update(qe.UpdateOperation.upsert_points(edge_points[i : i + 256]))
            s.shard.flush()
            s.pending += len(points)
            if s.pending >= self._optimize_after and not s.optimizing:
                self._optimize_in_background(tenant, name, s)

    def _optimize_in_background(self, tenant: str, name: str, s: _Shard) -> None:
        s.optimizing, s.pending = True, 0

        def run() -> None:
            try:
                s.shard.optimize()
                s.shard.flush()
            except Exception:  # noqa: BLE001 - a failed optimize leaves the plain segments searchable
                logger.exception("optimizing %s/%s failed", tenant, name)
            finally:
                s.optimizing = False
                self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"optimize-{tenant}-{name}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def optimize(self, tenant: str, name: str) -> bool:
        """Build HNSW now, blocking (benchmarks and tests)."""
        s = self._shard(tenant, name)
        done = s.shard.optimize()
        s.shard.flush()
        return done

    def delete(self, tenant: str, name: str, ids: list[str]) -> None:
        import qdrant_edge as qe

        if not ids:
            return
        s = self._shard(tenant, name)
        with s.lock:
            s.shard.update(qe.UpdateOperation.delete_points(list(ids)))
            s.shard.flush()

    def scroll(self, tenant: str, name: str, flt: Filter | None) -> list[Hit]:
        import qdrant_edge as qe

        s = self._shard(tenant, name)
        out: list[Hit] = []
        offset = None
        while True:
            records, offset = s.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, filter=_edge_filter(flt), with_payload=True)
            )
            out.extend(Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
            if offset is None:
                return out

    def count(self, tenant: str, name: str, flt: Filter | None) -> int:
        import qdrant_edge as qe

        return self._shard(tenant, name).shard.count(qe.CountRequest(exact=True, filter=_edge_filter(flt)))

    def search(
        self, tenant: str, name: str, using: str, vector: Any, limit: int, flt: Filter | None,
        with_payload: bool = True,
    ) -> list[Hit]:
        import qdrant_edge as qe

        s = self._shard(tenant, name)
        query_vector = qe.SparseVector(list(vector[0]), list(vector[1])) if using == SPARSE else list(vector)
        points = s.shard.query(
            qe.QueryRequest(limit=limit, query=qe.Query.Nearest(query_vector, using=using),
                            filter=_edge_filter(flt), with_payload=with_payload, params=qe.SearchParams(hnsw_ef=128))
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def payloads(self, tenant: str, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        records = self._shard(tenant, name).shard.retrieve(list(ids), True, False)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def wait_idle(self, timeout: float = 60.0) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def close(self) -> None:
        self.wait_idle()
        with self._lock:
            for s in self._shards.values():
                with s.lock:
                    s.shard.flush()
                    s.shard.close()
            self._shards.clear()


# --------------------------------------------------------------------------------------------- client


def _client_filter(f: Filter | None):
    from qdrant_client import models as m

    def cond(c):
        if isinstance(c, Filter):
            return _client_filter(c)
        if isinstance(c, Match):
            return m.FieldCondition(key=c.key, match=m.MatchValue(value=c.value))
        if isinstance(c, MatchAny):
            return m.FieldCondition(key=c.key, match=m.MatchAny(any=list(c.values)))
        if isinstance(c, Range):
            cls = m.DatetimeRange if c.datetime else m.Range
            return m.FieldCondition(key=c.key, range=cls(gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte))
        raise TypeError(c)

    if f is None or f.empty():
        return None
    return m.Filter(
        must=[cond(c) for c in f.must] or None,
        should=[cond(c) for c in f.should] or None,
        must_not=[cond(c) for c in f.must_not] or None,
    )


class ClientStore:
    """qdrant-client: one Qdrant collection per (tenant, collection); metadata in a registry collection."""

    engine = "qdrant"
    REGISTRY = "genai_retrieval_collections"

    def __init__(self, url: str, api_key: str = "") -> None:
        from qdrant_client import QdrantClient
        from qdrant_client import models as m

        self.engine_version = _version("qdrant-client")
        if url.startswith("local:"):
            path = url.removeprefix("local:")
            self._client = QdrantClient(location=":memory:") if path in ("", ":memory:") else QdrantClient(path=path)
        else:
            self._client = QdrantClient(url=url, api_key=api_key or None)
        self._lock = threading.Lock()
        if not self._client.collection_exists(self.REGISTRY):
            self._client.create_collection(self.REGISTRY, vectors_config={})
        self._m = m

    @staticmethod
    def _qname(tenant: str, name: str) -> str:
        return f"t_{check_name(tenant, 'tenant')}__{check_name(name, 'collection')}"

    @staticmethod
    def _meta_id(tenant: str, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"genai-retrieval/{tenant}/{name}"))

    def _require(self, tenant: str, name: str) -> str:
        qname = self._qname(tenant, name)
        if self.get(tenant, name) is None:
            raise NotFound(f"collection {name!r} not found", resource_type="collection", resource_name=name)
        return qname

    def create(self, tenant: str, name: str, meta: dict[str, Any]) -> None:
        m = self._m
        qname = self._qname(tenant, name)
        with self._lock:
            if self.get(tenant, name) is not None:
                raise AlreadyExists(f"collection {name!r} exists already", resource_type="collection", resource_name=name)
            if self._client.collection_exists(qname):
                self._client.delete_collection(qname)
            distance = {"cosine": m.Distance.COSINE, "dot": m.Distance.DOT, "euclid": m.Distance.EUCLID,
                        "manhattan": m.Distance.MANHATTAN}[meta["distance"]]
            self._client.create_collection(
                qname,
                vectors_config={DENSE: m.VectorParams(size=int(meta["dimensions"]), distance=distance)},
                sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)}
                if meta.get("sparse_enabled") else None,
            )
            self.update_meta(tenant, name, meta)

    def get(self, tenant: str, name: str) -> dict[str, Any] | None:
        try:
            self._qname(tenant, name)
        except InvalidArgument:
            return None
        found = self._client.retrieve(self.REGISTRY, [self._meta_id(tenant, name)], with_payload=True)
        return json.loads(found[0].payload["meta"]) if found else None

    def update_meta(self, tenant: str, name: str, meta: dict[str, Any]) -> None:
        point = self._m.PointStruct(
            id=self._meta_id(tenant, name), vector={},
            payload={"tenant": tenant, "name": name, "meta": json.dumps(meta, sort_keys=True)},
        )
        self._client.upsert(self.REGISTRY, [point])

    def list(self, tenant: str) -> list[dict[str, Any]]:
        m = self._m
        flt = m.Filter(must=[m.FieldCondition(key="tenant", match=m.MatchValue(value=tenant))])
        records, _ = self._client.scroll(self.REGISTRY, scroll_filter=flt, limit=10_000, with_payload=True)
        return sorted((json.loads(r.payload["meta"]) for r in records), key=lambda x: x["name"])

    def drop(self, tenant: str, name: str) -> bool:
        if self.get(tenant, name) is None:
            return False
        self._client.delete_collection(self._qname(tenant, name))
        self._client.delete(self.REGISTRY, points_selector=[self._meta_id(tenant, name)])
        return True

    def upsert(self, tenant: str, name: str, points: list[PointData]) -> None:
        m = self._m
        qname = self._require(tenant, name)
        structs = []
        for p in points:
            vector: dict[str, Any] = {DENSE: p.dense}
            if p.sparse is not None:
                vector[SPARSE] = m.SparseVector(indices=list(p.sparse[0]), values=list(p.sparse[1]))
            structs.append(m.PointStruct(id=p.id, vector=vector, payload=p.payload))
        for i in range(0, len(structs), 256):
            self._client.upsert(qname, structs[i : i + 256], wait=True)

    def delete(self, tenant: str, name: str, ids: list[str]) -> None:
        if ids:
            self._client.delete(self._require(tenant, name), points_selector=list(ids), wait=True)

    def scroll(self, tenant: str, name: str, flt: Filter | None) -> list[Hit]:
        qname = self._require(tenant, name)
        out: list[Hit] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                qname, scroll_filter=_client_filter(flt), limit=1000, offset=offset, with_payload=True
            )
            out.extend(Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
            if offset is None:
                return out

    def count(self, tenant: str, name: str, flt: Filter | None) -> int:
        return self._client.count(self._require(tenant, name), count_filter=_client_filter(flt), exact=True).count

    def search(
        self, tenant: str, name: str, using: str, vector: Any, limit: int, flt: Filter | None,
        with_payload: bool = True,
    ) -> list[Hit]:
        m = self._m
        qname = self._require(tenant, name)
        query = m.SparseVector(indices=list(vector[0]), values=list(vector[1])) if using == SPARSE else list(vector)
        result = self._client.query_points(
            qname, query=query, using=using, limit=limit, query_filter=_client_filter(flt), with_payload=with_payload
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in result.points]

    def payloads(self, tenant: str, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        records = self._client.retrieve(self._require(tenant, name), ids=list(ids), with_payload=True)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def close(self) -> None:
        self._client.close()


# ------------------------------------------------------------------------------------------- registry

STORES: dict[str, Callable[..., Store]] = {
    "edge": lambda data_dir, url, api_key, optimize_after_points: EdgeStore(data_dir, optimize_after_points),
    "client": lambda data_dir, url, api_key, optimize_after_points: ClientStore(url, api_key),
}


def open_store(data_dir: Path, qdrant_url: str = "", api_key: str = "", optimize_after_points: int = 1000) -> Store:
    """EdgeStore when ``qdrant_url`` is empty, else ClientStore (a server URL or ``local:<path>``)."""
    kind = "client" if qdrant_url else "edge"
    return STORES[kind](Path(data_dir), qdrant_url, api_key, optimize_after_points)
