"""Every documented limit, alone on the machine, completes (issue 14, item 5).

Each request sits at a limit of ``genai_core.limits`` and used to end in a 504 at the gateway's fixed 30 s
deadline: the default 512 generated tokens, 1,024 embedding inputs of a full 256-token window, a rerank of
1,000 such passages, an ingest of 64 long documents. The gateway's deadlines now follow the work, so each
completes (a large ingest as a long-running operation that is followed to its end).
"""

from __future__ import annotations

import time

import httpx
import pytest
from genai_core.limits import EMBEDDING, INFERENCE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TENANT = {"X-Tenant": "limits"}
SENTENCE = "The committee reviewed sample {i} of the harbour survey and filed its notes before noon. "


def _window_text(i: int) -> str:
    """About 260 MiniLM tokens: a full input window (the default truncation keeps the first 256)."""
    return "".join(SENTENCE.format(i=i + k) for k in range(16))


def test_generate_with_the_default_token_budget_completes(suite):
    reply = httpx.post(f"{suite.base_url}/generate", json={"inputs": "0", "parameters": {"details": True}},
                       timeout=900)
    assert reply.status_code == 200, reply.text
    details = reply.json()["details"]
    assert 0 < details["generated_tokens"] <= INFERENCE.max_new_tokens


def test_embeddings_at_the_input_limit_complete(suite):
    texts = [_window_text(i) for i in range(EMBEDDING.max_request_inputs)]
    reply = httpx.post(f"{suite.base_url}/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts,
                                                                "encoding_format": "float"}, timeout=900)
    assert reply.status_code == 200, reply.text[:500]
    body = reply.json()
    assert [d["index"] for d in body["data"]] == list(range(EMBEDDING.max_request_inputs))
    assert body["usage"]["prompt_tokens"] >= EMBEDDING.max_request_inputs * 250  # full windows, not short texts


def test_rerank_of_a_thousand_long_passages_completes(suite):
    passages = [_window_text(i) for i in range(1000)]
    passages[617] = "The harbour survey found that the north pier needs repairs before winter. " * 12
    reply = httpx.post(f"{suite.base_url}/v1/rerank", json={"query": "Which pier needs repairs?",
                                                            "documents": passages, "top_n": 3}, timeout=900)
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["results"][0]["index"] == 617


def test_ingest_of_64_long_documents_completes(suite):
    collection = "limits-ingest"
    created = httpx.post(f"{suite.base_url}/v1/collections", json={"name": collection}, headers=TENANT, timeout=60)
    assert created.status_code == 201, created.text
    documents = [{"id": f"doc-{d}", "text": "\n\n".join(_window_text(d * 100 + p) for p in range(6))}
                 for d in range(64)]
    reply = httpx.post(f"{suite.base_url}/v1/collections/{collection}/documents", json={"documents": documents},
                       headers=TENANT, timeout=900)
    assert reply.status_code in (200, 202), reply.text[:500]
    if reply.status_code == 202:  # over GENAI_GATEWAY_INGEST_ASYNC_BYTES: follow the operation to its end
        location = reply.headers["location"]
        deadline = time.monotonic() + 900
        operation = reply.json()
        while not operation["done"] and time.monotonic() < deadline:
            time.sleep(2)
            operation = httpx.get(f"{suite.base_url}{location}", headers=TENANT, timeout=60).json()
        assert operation["done"] and "error" not in operation, operation
    info = httpx.get(f"{suite.base_url}/v1/collections/{collection}", headers=TENANT, timeout=60).json()
    assert info["document_count"] == 64, info
    assert info["chunk_count"] >= 64 * 6, info
