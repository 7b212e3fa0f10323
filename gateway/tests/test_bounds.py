"""Issue 14, defects 1 and 2: every integer of the HTTP schema is bounded by its proto type and the service's
limit, and text protobuf cannot carry (a lone UTF-16 surrogate) is a 400 naming the field, never a 500.

Both are checked before the gateway calls a backend, so these run against a gateway with no backends.
"""

from __future__ import annotations

import json

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from genai_core.limits import FINETUNE, INFERENCE, RETRIEVAL
from genai_gateway.routing import ApiRoute

BAD = "invalid_request_error"


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def _unbounded(schema: dict, node: dict, path: str, seen: set[str]) -> list[str]:
    """Paths of integer properties reachable from ``node`` that lack a minimum or a maximum within uint64."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen = {*seen, name}
        node = _resolve(schema, node)
    found = []
    if node.get("type") == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        # FastAPI prints bounds as floats: beyond 2^53 they round past the field's range.
        if low is None or high is None or not all(float(b).is_integer() and abs(b) <= 2**53 for b in (low, high)):
            found.append(path)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            found += _unbounded(schema, sub, path, seen)
    if "items" in node:
        found += _unbounded(schema, node["items"], f"{path}[]", seen)
    for name, sub in node.get("properties", {}).items():
        found += _unbounded(schema, sub, f"{path}.{name}", seen)
    if isinstance(node.get("additionalProperties"), dict):
        found += _unbounded(schema, node["additionalProperties"], f"{path}.*", seen)
    return found


async def test_every_request_integer_in_the_schema_is_bounded(absent_client):
    schema = (await absent_client.get("/openapi.json")).json()
    unbounded = []
    for route, operations in schema["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                unbounded += _unbounded(schema, param["schema"], f"{method.upper()} {route} ?{param['name']}", set())
            for media in op.get("requestBody", {}).get("content", {}).values():
                unbounded += _unbounded(schema, media["schema"], f"{method.upper()} {route} body", set())
    assert unbounded == []


async def test_documented_limits_are_the_services_limits(absent_client):
    schema = (await absent_client.get("/openapi.json")).json()["components"]["schemas"]
    n = _resolve({"components": {"schemas": schema}}, schema["ChatCompletionRequest"]["properties"]["n"])
    assert n["maximum"] == INFERENCE.max_samples == 8  # was OpenAI's 128 while the server capped at 8
    top_k = schema["SearchIn"]["properties"]["top_k"]["anyOf"][0]
    assert top_k["maximum"] == RETRIEVAL.max_top_k
    epochs = schema["Hyperparameters"]["properties"]["n_epochs"]["anyOf"][0]
    assert epochs["maximum"] == FINETUNE.max_epochs == 50  # OpenAI's range, and the service's
    assert schema["ImageRequest"]["properties"]["n"]["maximum"] == INFERENCE.max_images


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("get", "/v1/collections?page_size=-1", None, "page_size"),
        ("get", "/v1/collections?page_size=9223372036854775808", None, "page_size"),
        ("get", "/v1/collections/c/documents?page_size=0", None, "page_size"),
        ("post", "/v1/collections/c/search", {"query": "x", "top_k": 5_000_000_000}, "top_k"),
        ("post", "/v1/collections/c/search", {"query": "x", "candidate_count": 2**63}, "candidate_count"),
        ("post", "/v1/collections/c/search", {"query": "x", "filter": {"year": 2**63}}, "filter.year"),
        ("post", "/v1/collections/c/search", {"query": "x", "filter": {"year": [1, -(2**64)]}}, "filter.year"),
        ("post", "/v1/collections", {"name": "c", "chunk_size_tokens": 2**63}, "chunk_size_tokens"),
        ("post", "/v1/collections", {"name": "c", "dimensions": 2**32}, "dimensions"),
        ("post", "/v1/collections/c/documents", {"documents": [{"text": "x"}], "chunk_overlap_tokens": 2**64},
         "chunk_overlap_tokens"),
        ("post", "/v1/rag/answer", {"collection": "c", "question": "q", "max_tokens": 2**63}, "max_tokens"),
        ("post", "/v1/rag/answer", {"collection": "c", "question": "q", "context_token_budget": 2**40},
         "context_token_budget"),
        ("post", "/v1/tokenizers", {"id": "t", "vocab_size": 2**63, "texts": ["a"]}, "vocab_size"),
        ("post", "/v1/tokenizers", {"id": "t", "vocab_size": 200, "texts": ["a"], "max_length": 2**32}, "max_length"),
        ("post", "/v1/context/pack", {"token_budget": 2**32}, "token_budget"),
        ("post", "/v1/detokenize", {"ids": [2**32]}, "ids[0]"),
        ("post", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 128}, "n"),
        ("post", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_k": 2**63}, "top_k"),
        ("post", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2**63},
         "max_tokens"),
        ("post", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": "x"}], "stop_token_ids": [2**32]}, "stop_token_ids[0]"),
        ("post", "/v1/completions", {"prompt": [1, 2**32]}, "prompt[1]"),
        ("post", "/v1/completions", {"prompt": "x", "max_tokens": 2**63}, "max_tokens"),
        ("post", "/v1/embeddings", {"input": [[1, 2**40]]}, "input[0][1]"),
        ("post", "/v1/embeddings", {"input": "x", "dimensions": 2**63}, "dimensions"),
        ("post", "/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 2**63}, "top_n"),
        ("post", "/generate", {"inputs": "x", "parameters": {"max_new_tokens": 2**63}}, "parameters.max_new_tokens"),
        ("post", "/generate", {"inputs": "x", "parameters": {"top_k": 2**32}}, "parameters.top_k"),
        ("get", "/v1/files?limit=9223372036854775808", None, "limit"),
        ("post", "/v1/fine_tuning/jobs", {"model": "m", "training_file": "f", "seed": 2**64}, "seed"),
        ("post", "/v1/fine_tuning/jobs", {"model": "m", "training_file": "f", "hyperparameters": {"batch_size": 2**32}},
         "hyperparameters.batch_size"),
        ("post", "/v1/finetune/jobs", {"training_dataset_id": "f", "hyperparameters": {"eval_steps": 2**32}},
         "hyperparameters.eval_steps"),
        ("post", "/v1/images/generations", {"model": "m", "prompt": "7", "seed": 2**64}, "seed"),
        ("post", "/v1/images/generations", {"model": "m", "prompt": "7", "size": "4294967296x4294967296"}, "size"),
    ],
)
async def test_out_of_range_integers_are_400_naming_the_field(absent_client, method, path, body, param):
    r = await absent_client.request(method, path, json=body)
    assert r.status_code in (400, 422), r.text  # the TGI routes answer 422, as TGI does
    error = r.json()["error"]
    if isinstance(error, dict):
        assert error["param"] == param, error
        assert error["type"] == BAD and error["message"].startswith(f"{param}: ")
    else:
        assert error.startswith(f"{param}: ") and r.json()["error_type"] == "validation"


async def test_multipart_chunk_size_out_of_range_is_400(absent_client):
    r = await absent_client.post(
        "/v1/collections/c/documents", files={"files": ("a.txt", b"hello")}, data={"chunk_size_tokens": str(2**63)}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "chunk_size_tokens"


SURROGATE = "\ud800"
USER = {"role": "user", "content": "hi"}


async def _post_escaped(client, path: str, body: dict):
    """POST ``body`` as JSON with every non-ASCII character escaped, the way a lone surrogate can travel."""
    return await client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/tokenize", {"input": SURROGATE}, "input"),
        ("/v1/tokenize", {"input": ["ok", f"a{SURROGATE}b"]}, "input[1]"),
        ("/v1/tokens/count", {"input": [SURROGATE]}, "input[0]"),
        ("/v1/chat/template", {"messages": [{"role": "user", "content": SURROGATE}]}, "messages[0].content"),
        ("/v1/embeddings", {"input": SURROGATE}, "input"),
        ("/v1/embeddings/sparse", {"input": ["x", SURROGATE]}, "input[1]"),
        ("/v1/rerank", {"query": SURROGATE, "documents": ["d"]}, "query"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": SURROGATE}]}, "messages[0].content"),
        ("/v1/chat/completions", {"messages": [USER], "stop": ["\udfff"]}, "stop[0]"),
        ("/v1/completions", {"prompt": SURROGATE}, "prompt"),
        ("/v1/collections", {"name": "c", "labels": {"k": SURROGATE}}, "labels.k"),
        ("/v1/collections/c/documents", {"documents": [{"text": SURROGATE}]}, "documents[0].text"),
        ("/v1/collections/c/documents", {"documents": [{"text": "x", "metadata": {SURROGATE: 1}}]},
         "documents[0].metadata.\\ud800"),
        ("/v1/collections/c/search", {"query": SURROGATE}, "query"),
        ("/v1/rag/answer", {"collection": "c", "question": SURROGATE}, "question"),
        ("/v1/fine_tuning/jobs", {"model": "m", "training_file": "f", "suffix": SURROGATE}, "suffix"),
        ("/v1/finetune/jobs", {"training_dataset_id": "f", "method_config": {"init_text": SURROGATE}},
         "method_config.init_text"),
        ("/v1/images/generations", {"model": "m", "prompt": SURROGATE}, "prompt"),
    ],
)
async def test_lone_surrogate_is_400_naming_the_field(absent_client, assert_envelope, path, body, param):
    r = await _post_escaped(absent_client, path, body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == param
    assert "surrogate" in error["message"] and error["message"].startswith(f"{param}: ")


async def test_lone_surrogate_on_tgi_routes_is_422_in_tgi_shape(absent_client):
    r = await _post_escaped(absent_client, "/generate", {"inputs": SURROGATE})
    assert r.status_code == 422, r.text
    assert r.json()["error_type"] == "validation" and r.json()["error"].startswith("inputs: ")


async def test_a_valid_surrogate_pair_is_text(absent_client):
    # "\ud83d\ude00" is one emoji: valid text, so the request gets as far as the (missing) backend.
    r = await absent_client.post("/v1/tokenize", content=b'{"input": "\\ud83d\\ude00"}',
                                 headers={"content-type": "application/json"})
    assert r.status_code == 503, r.text


def test_every_route_checks_its_json_body(absent_client):
    routes = [r.original_route for r in iter_route_contexts(absent_client.app.routes)]
    api = [r for r in routes if isinstance(r, APIRoute)]
    assert len(api) > 30  # every route of every router, not just the app's own
    plain = [r.path for r in api if not isinstance(r, ApiRoute)]
    assert plain == [], "give these routers route_class=genai_gateway.routing.ApiRoute"


# Found by the agent routes' fuzzing, checked on the other routes that parse the same kinds of value.
async def test_unicode_digits_and_huge_metadata_are_not_server_errors(absent_client):
    r = await absent_client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                               "logit_bias": {"4²": 1}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias", r.text
    r = await absent_client.post("/v1/collections/c/documents",
                                 json={"documents": [{"text": "x", "metadata": {"n": 10**400}}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "documents[0].metadata", r.text
    r = await absent_client.get("/v1/evaluations/runs/r/events", headers={"Last-Event-ID": "4²".encode("latin-1")})
    assert r.status_code == 503, r.text  # the header is ignored as not a sequence; no evaluation backend here
