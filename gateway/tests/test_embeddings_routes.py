"""Embedding routes through the gateway, against an in-process embedding service (real model, onnxruntime fp32).

/v1/embeddings is checked with the official ``openai`` SDK (float and its default base64, which it
decodes with numpy) and raw HTTP; /v1/embeddings/sparse and /v1/rerank with raw HTTP.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway

REPO = Path(__file__).resolve().parents[2]
MODEL = "all-minilm-l6-v2"
PARIS = "Paris is the capital of France."


@pytest.fixture(scope="session")
async def embedding_target() -> AsyncIterator[str]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from genai_embedding.embedder import Embedder
        from genai_embedding.servicer import service_spec
        from genai_embedding.settings import EmbeddingSettings

        embedder = Embedder.load(EmbeddingSettings(cache_dir=Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")))
    except Exception as exc:  # noqa: BLE001 - no embedding package or model: nothing to test against
        pytest.fail(f"the embedding service is not available: {exc}")
    await embedder.warmup()
    deferred = Deferred("embedding model")
    deferred.set(embedder)
    async with running_server([service_spec(deferred)]) as (server, _channel):
        yield f"127.0.0.1:{server.port}"
    await embedder.close()


@pytest.fixture(scope="session")
async def base_url(embedding_target: str) -> AsyncIterator[str]:
    settings = GatewaySettings(targets={"embedding": embedding_target})
    async with serve_gateway(settings) as url:
        yield url


@pytest.fixture(scope="session")
def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


async def test_openai_sdk_float_and_base64_agree(sdk):
    as_float = await sdk.embeddings.create(model=MODEL, input=[PARIS, "The cat sat."], encoding_format="float")
    as_b64 = await sdk.embeddings.create(model=MODEL, input=[PARIS, "The cat sat."])  # the SDK asks for base64
    assert as_float.object == "list" and as_float.model == MODEL
    assert [d.index for d in as_float.data] == [0, 1] and all(d.object == "embedding" for d in as_float.data)
    assert len(as_float.data[0].embedding) == 384
    np.testing.assert_allclose(as_b64.data[1].embedding, as_float.data[1].embedding, rtol=1e-6)
    assert np.linalg.norm(as_float.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 0


async def test_base64_is_little_endian_float32(http):
    body = (await http.post("/v1/embeddings", json={"input": PARIS, "encoding_format": "base64"})).json()
    plain = (await http.post("/v1/embeddings", json={"input": PARIS, "dimensions": 384})).json()
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, plain["data"][0]["embedding"], rtol=1e-6)
    assert set(plain) == {"object", "data", "model", "usage"}


async def test_token_id_inputs(http, sdk):
    ids = [101, 3000, 2003, 1996, 3007, 1997, 2605, 1012, 102]  # "Paris is the capital of France."
    by_ids = await sdk.embeddings.create(model=MODEL, input=[ids], encoding_format="float")
    by_text = await sdk.embeddings.create(model=MODEL, input=PARIS, encoding_format="float")
    np.testing.assert_allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    one = (await http.post("/v1/embeddings", json={"input": ids})).json()
    assert len(one["data"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": ""}, 400, "input"),
        ({"input": []}, 400, "input"),
        ({"input": ["ok", ""]}, 400, "input[1]"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"input": ["x"] * 2048}, 400, "input"),
        ({"input": "x", "model": "nope"}, 404, None),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ],
)
async def test_embedding_errors(http, body, status, param):
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


async def test_openai_sdk_raises_bad_request_for_empty_input(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(model=MODEL, input="")
    assert info.value.body["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        await sdk.embeddings.create(model="no-such-model", input="x")


async def test_sparse_route(http):
    body = (await http.post("/v1/embeddings/sparse", json={"input": ["the cat and the dog", "hello"]})).json()
    assert body["object"] == "list" and body["model"] == MODEL and len(body["data"]) == 2
    first = body["data"][0]
    assert first["object"] == "sparse_embedding" and first["indices"] == sorted(first["indices"])
    assert len(first["indices"]) == len(first["values"]) == 2  # bm25-english: cat, dog (stop words dropped)
    wordpiece = (await http.post("/v1/embeddings/sparse", json={"input": "the cat and the dog",
                                                                 "sparse_model": "bm25-wordpiece"})).json()
    assert len(wordpiece["data"][0]["indices"]) == 4  # the, cat, and, dog
    unknown = await http.post("/v1/embeddings/sparse", json={"input": "cat", "sparse_model": "splade"})
    assert unknown.status_code == 400 and "bm25-english" in unknown.json()["error"]["message"]
    assert body["usage"]["prompt_tokens"] > 0
    bad = await http.post("/v1/embeddings/sparse", json={"input": ""})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


async def test_rerank_route(http):
    docs = ["I like pizza.", PARIS, "Berlin is in Germany."]
    body = (await http.post("/v1/rerank", json={"query": "Which city is France's capital?", "documents": docs,
                                                "return_documents": True})).json()
    assert [r["index"] for r in body["results"]][0] == 1
    assert body["results"][0]["document"] == {"text": PARIS}
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and body["model"] == MODEL and body["id"]
    top = (await http.post("/v1/rerank", json={"query": "capital of France", "documents": docs, "top_n": 1})).json()
    assert len(top["results"]) == 1 and "document" not in top["results"][0]
    bad = await http.post("/v1/rerank", json={"query": "q", "documents": ["a", ""]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "documents[1]"
    empty = await http.post("/v1/rerank", json={"query": "", "documents": ["a"]})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "query"


async def test_embedding_backend_not_configured_is_503():
    async with serve_gateway(GatewaySettings(targets={})) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "backend_not_configured"


async def test_models_list_the_embedding_model(sdk):
    listed = {m.id: m for m in (await sdk.models.list()).data}
    card = listed[MODEL]
    assert card.owned_by == "genai" and card.type == "embedding" and card.max_model_len == 256
    assert (await sdk.models.retrieve(MODEL)).id == MODEL


async def test_models_still_list_when_the_inference_service_is_down(embedding_target):
    import socket

    with socket.socket() as down:  # bound, never listening: connections are refused
        down.bind(("127.0.0.1", 0))
        targets = {"embedding": embedding_target, "inference": f"127.0.0.1:{down.getsockname()[1]}"}
        async with serve_gateway(GatewaySettings(targets=targets, request_timeout=5)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                listed = await http.get("/v1/models")
                missing = await http.get("/v1/models/no-such-model")
    assert listed.status_code == 200 and [m["id"] for m in listed.json()["data"]] == [MODEL]
    assert missing.status_code == 503  # inference might know it: say it is down rather than "no such model"


async def test_the_retrieval_side_sparse_query_equals_the_embedding_services(http):
    # A sparse-only search computes its query in the retrieval service (genai_sparse): it must match.
    from genai_sparse import bm25

    text = "Which cities are the capitals of France and Germany?"
    served = (await http.post("/v1/embeddings/sparse", json={"input": text})).json()["data"][0]
    local = bm25.text_vector("bm25-english", text)
    assert served["indices"] == local.indices
    assert served["values"] == pytest.approx(local.values, rel=1e-6)
