"""End to end, through the gateway only: the retrieval user journey of `make run`.

Upload a PDF and a Markdown file with metadata, search them (hybrid, with a filter), get a streamed
answer with citations, restart the retrieval service on the same data directory and find the
collection and its documents again. The tests run in file order and share one collection.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.pdf import make_pdf

pytestmark = pytest.mark.e2e

TENANT = {"X-Tenant": "e2e"}
PDF_NAME, MD_NAME = "vienna-guide.pdf", "runbook.md"
PDF_PAGES = [
    "Vienna is the capital of Austria. It is famous for its coffee houses.",
    "The Danube river flows through Vienna on its way to the Black Sea.",
]
MARKDOWN = b"""# Runbook

## Running the tests

Run make test to execute the whole test suite, or make test-fast for the unit tests only.

## Deploying

Deploy with the Kustomize overlays in the deploy folder; every service has a gRPC health probe.
"""
GEO_QUESTION = "What is the capital of Austria?"


def _post(suite, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{suite.base_url}{path}", headers=TENANT, timeout=120, **kwargs)


def _get(suite, path: str) -> httpx.Response:
    return httpx.get(f"{suite.base_url}{path}", headers=TENANT, timeout=30)


def _search(suite, query: str, **options) -> list[dict]:
    reply = _post(suite, "/v1/collections/handbook/search", json={"query": query, "mode": "hybrid", **options})
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def _sse(lines) -> tuple[list[dict], bool]:
    """The JSON events of an SSE stream, and whether it ended with ``data: [DONE]``."""
    events, done = [], False
    for line in lines:
        if not line.startswith("data:"):
            assert line == "", f"unexpected SSE line {line!r}"
            continue
        assert not done, f"event after [DONE]: {line!r}"
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


@pytest.fixture(scope="module")
def handbook(suite):
    """The collection `handbook` of tenant e2e with one PDF (kind=guide) and one Markdown file (kind=runbook)."""
    created = _post(suite, "/v1/collections", json={"name": "handbook", "description": "e2e docs"})
    assert created.status_code == 201, created.text
    uploads = [
        (PDF_NAME, make_pdf(PDF_PAGES), "application/pdf", {"kind": "guide", "year": 2025}),
        (MD_NAME, MARKDOWN, "text/markdown", {"kind": "runbook", "year": 2026}),
    ]
    for name, data, mime, metadata in uploads:
        reply = _post(suite, "/v1/collections/handbook/documents",
                      files={"files": (name, data, mime)},
                      data={"metadata": json.dumps(metadata), "chunk_size_tokens": "20", "chunk_overlap_tokens": "0"})
        assert reply.status_code == 200, reply.text
        [result] = reply.json()["results"]
        assert result["document_id"] == name and result["outcome"] == "OUTCOME_CREATED", result
    return suite


def test_uploaded_pdf_and_markdown_are_documents_with_metadata(handbook):
    collection = _get(handbook, "/v1/collections/handbook").json()
    assert collection["document_count"] == 2 and collection["chunk_count"] >= 4, collection
    pdf = _get(handbook, f"/v1/collections/handbook/documents/{PDF_NAME}?include_chunks=true").json()
    assert pdf["mime_type"] == "application/pdf"
    assert pdf["metadata"] == {"kind": "guide", "year": 2025, "filename": PDF_NAME}
    assert [c["page_number"] for c in pdf["chunks"]] == [1, 2]  # small chunks: one per page
    assert "capital of Austria" in pdf["chunks"][0]["text"]
    md = _get(handbook, f"/v1/collections/handbook/documents/{MD_NAME}").json()
    assert md["mime_type"] == "text/markdown" and md["metadata"]["kind"] == "runbook"


def test_hybrid_search_honours_the_filter(handbook):
    unfiltered = _search(handbook, "capital of Austria coffee houses", top_k=5)
    assert unfiltered[0]["chunk"]["document_id"] == PDF_NAME
    assert {"dense", "sparse", "fused"} <= set(unfiltered[0]["stage_scores"]), unfiltered[0]
    assert {r["chunk"]["document_id"] for r in unfiltered} == {PDF_NAME, MD_NAME}

    # The same query, restricted to the runbook: the PDF, its best match, must not come back.
    only_runbook = _search(handbook, "capital of Austria coffee houses", top_k=5, filter={"kind": "runbook"})
    assert only_runbook and {r["chunk"]["document_id"] for r in only_runbook} == {MD_NAME}
    # The Qdrant-shaped form: a range on an integer field selects the PDF (year 2025) only.
    year_2025 = {"must": [{"field": {"key": "year", "range": {"lte": 2025}}}]}
    only_guide = _search(handbook, "how do I run the tests?", top_k=5, filter=year_2025)
    assert only_guide and {r["chunk"]["document_id"] for r in only_guide} == {PDF_NAME}
    assert _search(handbook, "how do I run the tests?", top_k=1)[0]["chunk"]["document_id"] == MD_NAME

    other = httpx.post(f"{handbook.base_url}/v1/collections/handbook/search", headers={"X-Tenant": "other"},
                       json={"query": "Vienna"}, timeout=30)
    assert other.status_code == 404  # another tenant does not see the collection


def test_streamed_answer_has_deltas_and_cites_the_pdf(handbook):
    request = {"collection": "handbook", "question": GEO_QUESTION, "max_tokens": 32, "temperature": 0,
               "top_k": 2, "stream": True}
    with httpx.stream("POST", f"{handbook.base_url}/v1/rag/answer", headers=TENANT, json=request,
                      timeout=120) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events, done = _sse(reply.iter_lines())
    assert done, "the stream did not end with data: [DONE]"
    kinds = [e["type"] for e in events]
    assert kinds[0] == "contexts" and kinds[-1] == "complete", kinds
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 4, kinds  # several deltas, nothing else between
    contexts = events[0]["contexts"]
    assert contexts[0]["chunk"]["document_id"] == PDF_NAME
    answer = "".join(e["text"] for e in events if e["type"] == "delta")
    assert answer.strip()
    complete = events[-1]
    assert complete["citations"], complete
    for citation in complete["citations"]:
        cited = contexts[citation.get("context_index", 0)]["chunk"]
        assert citation["document_id"] == cited["document_id"] and citation["chunk_id"] == cited["chunk_id"]
    assert complete["citations"][0]["document_id"] == PDF_NAME
    assert complete["usage"]["completion_tokens"] >= 1

    # The unary answer (same greedy decoding) says the same thing with the same citations.
    unary = _post(handbook, "/v1/rag/answer", json={**request, "stream": False})
    assert unary.status_code == 200, unary.text
    assert unary.json()["answer"] == answer
    assert unary.json()["citations"] == complete["citations"]


def test_a_streamed_answer_is_one_trace_exported_by_every_service(handbook):
    """Over OTLP from the real processes: one connected tree across five services, each span naming its
    service and side, the GenAI kinds Phoenix reads, the search's stages in the retrieval metrics, and not
    one span from the health checks the suite made while starting and being probed."""
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4738"
    with httpx.stream("POST", f"{handbook.base_url}/v1/rag/answer", headers={
            **TENANT, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}, timeout=120, json={
            "collection": "handbook", "question": GEO_QUESTION, "max_tokens": 8, "stream": True}) as reply:
        events, done = _sse(reply.iter_lines())
    assert done and events[-1]["type"] == "complete"
    expected = {"gateway", "retrieval", "embedding", "tokenizer", "inference"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spans = handbook.sink.spans(trace_id)
        if expected <= {s.service for s in spans} and any(s.name == "retrieval → inference.ChatStream" for s in spans):
            break
        time.sleep(0.2)
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert [r.name for r in roots] == ["gateway POST /v1/rag/answer"], [(s.name, s.parent_span_id) for s in spans]
    assert {s.attributes.get("service.name") for s in spans} == expected
    kinds = {s.name: s.attributes.get("openinference.span.kind") for s in spans}
    assert kinds["retrieval.AnswerStream"] == "CHAIN" and kinds["retrieval.search handbook"] == "RETRIEVER"
    assert kinds["embedding.Embed"] == "EMBEDDING" and kinds["inference.ChatStream"] == "LLM"
    llm = next(s for s in spans if s.name == "inference.ChatStream")
    assert llm.attributes["gen_ai.usage.output_tokens"] == events[-1]["usage"]["completion_tokens"]
    assert "gen_ai.first_token" in llm.events
    assert by_id[llm.parent_span_id].name == "retrieval → inference.ChatStream"
    assert not [s.name for s in handbook.sink.all_spans() if "Health" in s.name or "readyz" in s.name]
    scrape = httpx.get(f"http://{handbook.metrics['retrieval']}/metrics", timeout=10).text
    for stage in ("embed", "dense", "sparse", "fuse", "fetch"):
        assert f'genai_stage_duration_seconds_count{{pipeline="search",stage="{stage}"}}' in scrape, stage


def test_collection_survives_a_restart(handbook):
    before = _get(handbook, "/v1/collections/handbook").json()
    best = _search(handbook, "Danube river", top_k=3)
    documents = sorted(d["document_id"] for d in _get(handbook, "/v1/collections/handbook/documents").json()["data"])

    offset = handbook.retrieval_log.stat().st_size
    handbook.restart_retrieval()
    # SIGTERM ran the service's close step after the drain: the embedded store was closed, not dropped.
    assert b"closed the vector store" in handbook.retrieval_log.read_bytes()[offset:]

    after = _get(handbook, "/v1/collections/handbook")
    assert after.status_code == 200, after.text
    for key in ("name", "description", "document_count", "chunk_count", "embedding_model", "sparse_enabled"):
        assert after.json()[key] == before[key], key
    listed = _get(handbook, "/v1/collections/handbook/documents").json()["data"]
    assert sorted(d["document_id"] for d in listed) == documents == [MD_NAME, PDF_NAME]
    again = _search(handbook, "Danube river", top_k=3)
    assert again[0]["chunk"]["document_id"] == PDF_NAME
    assert [r["chunk"]["chunk_id"] for r in again] == [r["chunk"]["chunk_id"] for r in best]
    filtered = _search(handbook, "Danube river", top_k=3, filter={"kind": "runbook"})
    assert {r["chunk"]["document_id"] for r in filtered} == {MD_NAME}
