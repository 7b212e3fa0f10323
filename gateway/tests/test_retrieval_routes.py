"""Retrieval routes through the gateway: a real retrieval service (Qdrant Edge in a temporary directory) in-process,
over the real embedding and tokenizer services and the scripted fake inference (its answer has no [n] markers, so
the answer cites the top context)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway

pytest_plugins = ["gateway.tests.fake_inference"]

REPO = Path(__file__).resolve().parents[2]
MD = b"""# Cities

Paris is the capital of France. The Eiffel Tower stands in Paris.

## Germany

Berlin is the capital of Germany. The Brandenburg Gate is in Berlin.
"""


@pytest.fixture(scope="module")
async def retrieval_target(tokenizer_port, inference_target, tmp_path_factory) -> AsyncIterator[str]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from genai_core.downstream import Downstream
    from genai_core.operations import Operations
    from genai_core.settings import DownstreamSettings
    from genai_embedding.embedder import Embedder
    from genai_embedding.servicer import service_spec as embedding_spec
    from genai_embedding.settings import EmbeddingSettings
    from genai_retrieval.clients import ChatClient, EmbeddingClient, PackingClient
    from genai_retrieval.pipelines import Pipelines
    from genai_retrieval.servicer import service_specs
    from genai_retrieval.settings import PREFIX, RetrievalSettings
    from genai_retrieval.store import open_store

    cache = Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")
    embedder = Embedder.load(EmbeddingSettings(cache_dir=cache))
    await embedder.warmup()
    deferred = Deferred("embedding model")
    deferred.set(embedder)
    async with running_server([embedding_spec(deferred)]) as (emb_server, _):
        data = tmp_path_factory.mktemp("retrieval")
        settings = RetrievalSettings(data_dir=data, chunk_size_tokens=64, chunk_overlap_tokens=8,
                                     answer_model="fake-model")
        downstream = Downstream(DownstreamSettings({
            "embedding": f"127.0.0.1:{emb_server.port}", "inference": inference_target,
            "tokenizer": f"127.0.0.1:{tokenizer_port}"}), caller_prefix=PREFIX)
        store = open_store(data)
        r = Deferred("retrieval")
        r.set(Pipelines.build(settings, store, EmbeddingClient(downstream), ChatClient(downstream),
                              PackingClient(downstream)))
        operations = Operations("retrieval")
        async with running_server(service_specs(r, operations)) as (server, _):
            yield f"127.0.0.1:{server.port}"
        await operations.close()
        store.close()
        await downstream.close()
    await embedder.close()


@pytest.fixture(scope="module")
async def http(retrieval_target) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(targets={"retrieval": retrieval_target})
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def seeded(http) -> str:
    r = await http.post("/v1/collections", json={"name": "kb", "description": "cities"}, headers={"X-Tenant": "acme"})
    assert r.status_code == 201, r.text
    files = {"files": ("cities.md", MD, "text/markdown")}
    r = await http.post("/v1/collections/kb/documents", files=files, data={"metadata": json.dumps({"topic": "geo"})},
                        headers={"X-Tenant": "acme"})
    assert r.status_code == 200, r.text
    r = await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"}, json={"documents": [
        {"id": "rome", "text": "<p>Rome is the capital of Italy.</p>", "content_type": "text/html",
         "metadata": {"topic": "history", "year": 2001}}]})
    assert r.status_code == 200, r.text
    return "kb"


async def test_collections_crud_and_tenancy(http, seeded, assert_envelope):
    r = await http.get("/v1/collections", headers={"X-Tenant": "acme"})
    assert [c["name"] for c in r.json()["data"]] == ["kb"]
    got = (await http.get("/v1/collections/kb", headers={"X-Tenant": "acme"})).json()
    assert got["document_count"] == 2 and got["vector_config"]["dimensions"] == 384 and got["sparse_enabled"]
    assert (await http.get("/v1/collections")).json()["data"] == []  # the default tenant sees nothing
    assert_envelope(await http.get("/v1/collections/kb"), 404, "not_found_error")
    assert_envelope(await http.delete("/v1/collections/kb", headers={"X-Tenant": "other"}), 404)
    assert_envelope(await http.post("/v1/collections", json={"name": "kb"}, headers={"X-Tenant": "acme"}), 409)
    err = assert_envelope(await http.post("/v1/collections", json={"name": "x", "dimensions": 7}), 400)
    assert err["param"] == "dimensions"
    assert (await http.post("/v1/collections", json={"name": "tmp"})).status_code == 201
    assert (await http.delete("/v1/collections/tmp")).json()["deleted"] is True


async def test_upload_errors(http, seeded, assert_envelope):
    err = assert_envelope(await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                                          files={"files": ("bad.pdf", b"%PDF-1.4 junk", "application/pdf")}), 400)
    assert err["param"] == "files[0]" and "bad.pdf" in err["message"]  # multipart clients sent `files`
    err = assert_envelope(await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                                          json={"documents": [{"text": "  "}]}), 400)
    assert err["param"] == "documents[0]"
    assert_envelope(await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"}, json={"docs": []}),
                    400)


async def test_search_hybrid_with_filter(http, seeded, assert_envelope):
    r = await http.post("/v1/collections/kb/search", headers={"X-Tenant": "acme"},
                        json={"query": "Brandenburg Gate", "mode": "hybrid", "filter": {"topic": "geo"}, "top_k": 3})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data and "Berlin" in data[0]["chunk"]["text"]
    assert {d["chunk"]["metadata"]["topic"] for d in data} == {"geo"}
    assert "fused" in data[0]["stage_scores"] and data[0]["chunk"]["metadata"]["filename"] == "cities.md"
    r = await http.post("/v1/collections/kb/search", headers={"X-Tenant": "acme"}, json={
        "query": "capital", "filter": {"must": [{"field": {"key": "year", "range": {"gte": 2000}}}]}})
    assert [d["chunk"]["document_id"] for d in r.json()["data"]] == ["rome"]
    r = await http.post("/v1/collections/kb/search", headers={"X-Tenant": "acme"},
                        json={"query": "Italy", "mode": "dense", "rerank": True, "top_k": 1})
    assert r.json()["data"][0]["chunk"]["document_id"] == "rome" and "rerank" in r.json()["data"][0]["stage_scores"]
    r = await http.post("/v1/collections/kb/search", headers={"X-Tenant": "acme"},
                        json={"query": "Italy", "mode": "dense", "rerank": True, "rerank_fuse": True, "top_k": 2})
    top = r.json()["data"][0]
    assert top["chunk"]["document_id"] == "rome" and {"dense", "rerank"} <= set(top["stage_scores"])
    assert top["score"] != top["stage_scores"]["rerank"]  # ordered by the fusion of both, not the reranker alone
    err = assert_envelope(await http.post("/v1/collections/kb/search", headers={"X-Tenant": "acme"}, json={
        "query": "x", "filter": {"must": [{"field": {"key": "year"}}]}}), 400)
    assert err["param"].startswith("filter.must[0]")


async def test_rag_answer_and_stream(http, seeded):
    body = {"collection": "kb", "question": "What is the capital of Germany?", "max_tokens": 16}
    r = await http.post("/v1/rag/answer", headers={"X-Tenant": "acme"}, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["answer"] and answer["contexts"] and answer["citations"]
    assert answer["citations"][0]["chunk_id"] == answer["contexts"][0]["chunk"]["chunk_id"]
    async with http.stream("POST", "/v1/rag/answer", headers={"X-Tenant": "acme"}, json={**body, "stream": True}) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in s.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[0]["type"] == "contexts" and events[-1]["type"] == "complete"
    assert "".join(e["text"] for e in events if e["type"] == "delta") and events[-1]["citations"]
    r = await http.post("/v1/rag/answer", json={**body, "collection": "missing"})
    assert r.status_code == 404


async def test_documents_list_get_delete(http, seeded):
    h = {"X-Tenant": "acme"}
    docs = (await http.get("/v1/collections/kb/documents", headers=h)).json()["data"]
    assert sorted(d["document_id"] for d in docs) == ["cities.md", "rome"]
    doc = (await http.get("/v1/collections/kb/documents/rome?include_chunks=true", headers=h)).json()
    assert doc["chunks"][0]["text"] == "Rome is the capital of Italy."
    year = doc["chunks"][0]["metadata"]["year"]  # a Struct holds doubles; the gateway gives integers back
    assert year == 2001 and isinstance(year, int) and isinstance(doc["metadata"]["year"], int)
    r = await http.post("/v1/collections/kb/documents/delete", headers=h, json={"filter": {"topic": "history"}})
    assert r.json()["deleted_document_count"] == 1


# -- issue 14: large ingests as operations, binary uploads, the tenant header ------------------------


async def _finished(http: httpx.AsyncClient, location: str, tenant: str) -> dict:
    for _ in range(600):
        op = (await http.get(location, headers={"X-Tenant": tenant})).json()
        if op["done"]:
            return op
        await asyncio.sleep(0.05)
    raise AssertionError(f"operation {location} did not finish")


async def test_an_ingest_can_run_as_an_operation(http, seeded):
    docs = [{"id": f"doc-{i}", "text": f"Document {i} is about the river number {i}."} for i in range(5)]
    r = await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme", "Prefer": "respond-async"},
                        json={"documents": docs})
    assert r.status_code == 202, r.text
    op = r.json()
    assert op["name"].startswith("operations/retrieval-") and op["kind"] == "retrieval.ingest" and not op["done"]
    assert r.headers["location"] == f"/v1/{op['name']}"
    done = await _finished(http, r.headers["location"], "acme")
    assert "error" not in done, done
    assert [x["document_id"] for x in done["response"]["results"]] == [d["id"] for d in docs]
    assert done["response"]["@type"].endswith("genai.retrieval.v1.IngestDocumentsResponse")
    assert done["metadata"]["@type"].endswith("genai.retrieval.v1.IngestProgress")
    got = await http.get("/v1/collections/kb/documents/doc-4", headers={"X-Tenant": "acme"})
    assert got.status_code == 200
    assert (await http.get(r.headers["location"])).status_code == 404  # another tenant's operation


async def test_a_failed_operation_writes_nothing(http, seeded):
    r = await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme", "Prefer": "respond-async"},
                        json={"documents": [{"id": "ok-doc", "text": "fine text"}, {"id": "empty", "text": "  "}]})
    done = await _finished(http, r.headers["location"], "acme")
    assert done["error"]["code"] == "INVALID_ARGUMENT" and "response" not in done
    assert (await http.get("/v1/collections/kb/documents/ok-doc", headers={"X-Tenant": "acme"})).status_code == 404


async def test_an_unknown_collection_fails_before_the_operation(http, assert_envelope):
    r = await http.post("/v1/collections/nope/documents", headers={"X-Tenant": "acme", "Prefer": "respond-async"},
                        json={"documents": [{"text": "x"}]})
    assert_envelope(r, 404, "not_found_error")


async def test_large_uploads_become_operations_by_size(retrieval_target, seeded):
    settings = GatewaySettings(targets={"retrieval": retrieval_target}, ingest_async_bytes=64)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        small = await client.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                                  json={"documents": [{"id": "tiny", "text": "Tiny."}]})
        large = await client.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                                  json={"documents": [{"id": "big", "text": "Long text about rivers. " * 10}]})
        assert small.status_code == 200 and large.status_code == 202
        assert "error" not in await _finished(client, large.headers["location"], "acme")


@pytest.mark.parametrize(("name", "content", "kind", "fragment"), [
    ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", "application/octet-stream", "unsupported"),
    ("blob", b"\x7fELF\x02\x01\x01\x00\x00\x00", "application/octet-stream", "NUL"),
    ("notes.txt", b"text\x00with a NUL", "text/plain", "NUL"),
])
async def test_binary_uploads_are_rejected(http, seeded, assert_envelope, name, content, kind, fragment):
    # Issue 14 defect 9: an .exe was accepted as text (MZ\0\0 decodes as UTF-8).
    err = assert_envelope(await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                                          files={"files": (name, content, kind)}), 400)
    assert err["param"] == "files[0]" and fragment in err["message"], err


async def test_a_text_file_without_extension_is_text(http, seeded):
    r = await http.post("/v1/collections/kb/documents", headers={"X-Tenant": "acme"},
                        files={"files": ("README", b"Plain notes about Lisbon.", "application/octet-stream")})
    assert r.status_code == 200, r.text


async def test_an_empty_tenant_header_is_an_error(http, assert_envelope):
    # Was silently the tenant "default".
    err = assert_envelope(await http.get("/v1/collections", headers={"X-Tenant": ""}), 400)
    assert err["param"] == "X-Tenant"
