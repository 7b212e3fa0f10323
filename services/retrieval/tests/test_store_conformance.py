"""One conformance suite, run against both stores: EdgeStore and ClientStore (qdrant-client local mode)."""

from __future__ import annotations

import math
import uuid

import pytest
from genai_core.errors import AlreadyExists, InvalidArgument, NotFound
from genai_retrieval.filters import documents
from genai_retrieval.store import DENSE, SPARSE, ClientStore, EdgeStore, PointData, open_store
from genai_retrieval.types import Filter, Match, MatchAny, Range

META = {"tenant": "t1", "name": "c1", "dimensions": 4, "distance": "cosine", "sparse_enabled": True}


def _vec(i: int) -> list[float]:
    v = [1.0, math.sin(i), math.cos(i), i / 10]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _points(n: int = 6) -> list[PointData]:
    return [
        PointData(str(uuid.uuid4()), _vec(i), ([i + 1, 100], [1.0, 0.5]),
                  {"document_id": f"d{i % 3}", "chunk_index": i // 3, "text": f"chunk {i}",
                   "metadata": {"lang": "en" if i % 2 else "fr", "year": 2000 + i, "tags": ["a", f"t{i}"],
                                "author": {"name": f"n{i}"}}})
        for i in range(n)
    ]


def _open(kind: str, root):
    return open_store(root / "edge") if kind == "edge" else open_store(root, f"local:{root / 'qdrant'}")


@pytest.fixture(params=["edge", "client"])
def store(request, tmp_path):
    s = _open(request.param, tmp_path)
    s.kind = request.param
    yield s
    s.close()


def test_registry_picks_the_implementation(tmp_path):
    edge = open_store(tmp_path / "e")
    client = open_store(tmp_path, f"local:{tmp_path / 'q'}")
    try:
        assert isinstance(edge, EdgeStore) and edge.engine == "qdrant-edge"
        assert isinstance(client, ClientStore) and client.engine == "qdrant"
    finally:
        edge.close()
        client.close()


def test_collections_lifecycle_and_tenancy(store):
    store.create("t1", "c1", META)
    with pytest.raises(AlreadyExists):
        store.create("t1", "c1", META)
    assert store.get("t1", "c1")["dimensions"] == 4
    assert store.get("t2", "c1") is None
    assert [m["name"] for m in store.list("t1")] == ["c1"]
    assert store.list("t2") == []
    with pytest.raises(NotFound):
        store.count("t2", "c1", None)
    with pytest.raises(InvalidArgument):
        store.create("t1", "../x", META)
    assert store.drop("t1", "c1") is True
    assert store.get("t1", "c1") is None and store.drop("t1", "c1") is False


def test_upsert_search_filters_delete(store):
    store.create("t1", "c1", META)
    points = _points()
    store.upsert("t1", "c1", points)
    assert store.count("t1", "c1", None) == 6
    hits = store.search("t1", "c1", DENSE, _vec(2), 3, None)
    assert hits[0].id == points[2].id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload["metadata"]["author"]["name"] == "n2"
    sparse = store.search("t1", "c1", SPARSE, ([4], [1.0]), 3, None)
    assert [h.id for h in sparse] == [points[3].id]
    bare = store.search("t1", "c1", DENSE, _vec(2), 3, None, False)  # ids and scores; payloads fetched later
    assert [h.id for h in bare] == [h.id for h in hits] and all(h.payload == {} for h in bare)
    payloads = store.payloads("t1", "c1", [points[2].id, points[5].id, "00000000-0000-0000-0000-000000000000"])
    assert payloads == {points[2].id: points[2].payload, points[5].id: points[5].payload}  # unknown ids: absent
    # typed filters: equals, any_of on a list field, numeric range, nested key, should / must_not
    fr = Filter(must=[Match("metadata.lang", "fr")])
    assert {h.payload["metadata"]["lang"] for h in store.search("t1", "c1", DENSE, _vec(1), 10, fr)} == {"fr"}
    assert store.count("t1", "c1", Filter(must=[MatchAny("metadata.tags", ("t1", "t4"))])) == 2
    assert store.count("t1", "c1", Filter(must=[Range("metadata.year", gte=2003)])) == 3
    assert store.count("t1", "c1", Filter(must=[Match("metadata.author.name", "n5")])) == 1
    assert store.count("t1", "c1", Filter(should=[Match("metadata.year", 2000), Match("metadata.year", 2001)],
                                            must_not=[Match("metadata.lang", "en")])) == 1
    scrolled = store.scroll("t1", "c1", documents(["d0"]))
    assert sorted(h.payload["text"] for h in scrolled) == ["chunk 0", "chunk 3"]
    store.delete("t1", "c1", [h.id for h in scrolled])
    assert store.count("t1", "c1", None) == 4


def test_persists_across_reopen(tmp_path, store):
    store.create("t1", "c1", META)
    store.upsert("t1", "c1", _points())
    store.close()
    again = _open(store.kind, tmp_path)
    try:
        assert again.count("t1", "c1", None) == 6
        assert again.get("t1", "c1")["name"] == "c1"
        assert len(again.search("t1", "c1", DENSE, _vec(0), 2, None)) == 2
    finally:
        again.close()
    store.close = lambda: None


def test_edge_optimize_builds_hnsw_in_the_background(tmp_path):
    store = EdgeStore(tmp_path, optimize_after_points=4)
    try:
        store.create("t1", "c1", {**META, "sparse_enabled": False})
        store.upsert("t1", "c1", [PointData(p.id, p.dense, None, p.payload) for p in _points()])
        store.wait_idle()
        assert store.count("t1", "c1", None) == 6
        assert store.search("t1", "c1", DENSE, _vec(4), 1, None)[0].payload["text"] == "chunk 4"
        store.optimize("t1", "c1")
    finally:
        store.close()
