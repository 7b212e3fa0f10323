"""One table of bad inputs, at least one row per route of the OpenAPI schema (a new route must add its rows:
``test_every_route_has_rows`` fails until it does). Each bad request gets a 4xx in the route's error shape,
naming the field to fix where there is one, and never a 5xx (issue 14: zero 5xx under fuzzing).

Runs against a gateway whose only backend is the real tokenizer service: everything here is refused before
a backend is asked, or by the tokenizer.
"""

from __future__ import annotations

import json

import pytest
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings

USER = [{"role": "user", "content": "hi"}]
NO_INPUT = "takes no input"  # routes with nothing a client can get wrong (lists, health)

# (method, path template) -> [(url, body or None, status, param)]; param None: the error names no field.
TABLE: dict[tuple[str, str], list] = {
    ("GET", "/healthz"): NO_INPUT,
    ("GET", "/readyz"): NO_INPUT,
    ("GET", "/v1/models"): NO_INPUT,
    ("GET", "/v1/tokenizers"): NO_INPUT,
    ("POST", "/v1/tokenize"): [("/v1/tokenize", {}, 400, "input"),
                               ("/v1/tokenize", {"input": ["a"] * 257}, 400, "input"),
                               ("/v1/tokenize", {"input": "x", "add_special_tokens": "yes"}, 400, "add_special_tokens")],
    ("POST", "/v1/detokenize"): [("/v1/detokenize", {"ids": [-1]}, 400, "ids[0]"),
                                 ("/v1/detokenize", {"ids": [[1, 99_999_999]]}, 400, "ids[0][1]")],
    ("POST", "/v1/tokens/count"): [("/v1/tokens/count", {"input": 5}, 400, "input")],
    ("POST", "/v1/chat/template"): [("/v1/chat/template", {"messages": []}, 400, "messages")],
    ("POST", "/v1/context/pack"): [("/v1/context/pack", {"token_budget": 0}, 400, "token_budget")],
    ("GET", "/v1/tokenizers/{tokenizer_id}"): [("/v1/tokenizers/no-such", None, 404, None)],
    ("POST", "/v1/tokenizers"): [("/v1/tokenizers", {"id": "t", "vocab_size": 50, "texts": ["a"]}, 400, "vocab_size"),
                                 ("/v1/tokenizers", {"id": "t", "vocab_size": 200}, 400, "texts")],
    ("POST", "/v1/chat/completions"): [
        ("/v1/chat/completions", {"messages": USER, "n": 9}, 400, "n"),
        ("/v1/chat/completions", {"messages": USER, "temperature": 3}, 400, "temperature"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ],
    ("POST", "/v1/completions"): [("/v1/completions", {"prompt": "x", "logprobs": 21}, 400, "logprobs"),
                                  ("/v1/completions", {"prompt": []}, 400, "prompt")],
    ("GET", "/v1/models/{model}"): [("/v1/models/no-such-model", None, 503, None)],  # no inference backend here
    ("POST", "/v1/responses"): [("/v1/responses", {"input": "x", "background": True}, 400, "background"),
                                ("/v1/responses", {}, 400, "input")],
    ("GET", "/v1/responses/{response_id}"): [("/v1/responses/resp_unknown", None, 404, None)],
    ("DELETE", "/v1/responses/{response_id}"): [("/v1/responses/resp_unknown", None, 404, None)],
    ("GET", "/v1/responses/{response_id}/input_items"): [("/v1/responses/resp_unknown/input_items", None, 404, None)],
    ("POST", "/v1/embeddings"): [("/v1/embeddings", {"input": ""}, 400, "input"),
                                 ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, 400, "encoding_format")],
    ("POST", "/v1/embeddings/sparse"): [("/v1/embeddings/sparse", {"input": []}, 400, "input")],
    ("POST", "/v1/rerank"): [("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
                             ("/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 0}, 400, "top_n")],
    ("POST", "/v1/collections"): [("/v1/collections", {"name": "Not Valid"}, 400, "name")],
    ("GET", "/v1/collections"): [("/v1/collections?page_size=0", None, 400, "page_size")],
    ("GET", "/v1/collections/{collection}"): [("/v1/collections/UPPER", None, 400, "collection")],
    ("DELETE", "/v1/collections/{collection}"): [("/v1/collections/-bad", None, 400, "collection")],
    ("POST", "/v1/collections/{collection}/documents"): [
        ("/v1/collections/c/documents", {"documents": []}, 400, "documents"),
        ("/v1/collections/c/documents", {"documents": [{"text": "x", "bogus": 1}]}, 400, "documents[0].bogus"),
    ],
    ("GET", "/v1/collections/{collection}/documents"): [("/v1/collections/c/documents?page_size=5000", None, 400,
                                                         "page_size")],
    ("GET", "/v1/collections/{collection}/documents/{document_id}"): [
        ("/v1/collections/c/documents/d?include_chunks=perhaps", None, 400, "include_chunks")],
    ("POST", "/v1/collections/{collection}/documents/delete"): [
        ("/v1/collections/c/documents/delete", {"ids": []}, 400, "ids")],
    ("POST", "/v1/collections/{collection}/search"): [
        ("/v1/collections/c/search", {"query": ""}, 400, "query"),
        ("/v1/collections/c/search", {"query": "x", "mode": "fuzzy"}, 400, "mode"),
    ],
    ("POST", "/v1/rag/answer"): [("/v1/rag/answer", {"collection": "c", "question": "q", "max_tokens": 0}, 400,
                                  "max_tokens")],
    ("GET", "/v1/operations/{operation_id}"): [("/v1/operations/not-an-id!", None, 400, "operation_id"),
                                               ("/v1/operations/nosuchservice-ab", None, 404, None)],
    ("POST", "/v1/operations/{operation_id}/cancel"): [("/v1/operations/x/cancel", None, 400, "operation_id")],
    ("GET", "/v1/evaluations/info"): NO_INPUT,
    ("GET", "/v1/evaluations/tasks"): [("/v1/evaluations/tasks?output_type=guess", None, 400, "output_type"),
                                       ("/v1/evaluations/tasks?page_size=0", None, 400, "page_size")],
    ("GET", "/v1/evaluations/tasks/{task_id}"): [("/v1/evaluations/tasks/t", None, 503, None)],  # no backend here
    ("POST", "/v1/evaluations/tasks"): [("/v1/evaluations/tasks", {}, 400, "yaml"),
                                        ("/v1/evaluations/tasks", {"yaml": ""}, 400, "yaml")],
    ("GET", "/v1/evaluations/metrics"): [("/v1/evaluations/metrics?output_type=x", None, 400, "output_type")],
    ("POST", "/v1/evaluations/runs"): [("/v1/evaluations/runs", {"tasks": []}, 400, "tasks"),
                                       ("/v1/evaluations/runs", {"tasks": ["t"], "limit": 0}, 400, "limit"),
                                       ("/v1/evaluations/runs", {"tasks": ["t"], "seed": -1}, 400, "seed"),
                                       ("/v1/evaluations/runs", {"tasks": ["t"], "search_mode": "fuzzy"}, 400,
                                        "search_mode")],
    ("GET", "/v1/evaluations/runs"): [("/v1/evaluations/runs?state=done", None, 400, "state"),
                                      ("/v1/evaluations/runs?page_size=0", None, 400, "page_size")],
    ("GET", "/v1/evaluations/runs/{run_id}"): [("/v1/evaluations/runs/r", None, 503, None)],
    ("POST", "/v1/evaluations/runs/{run_id}/cancel"): [("/v1/evaluations/runs/r/cancel", None, 503, None)],
    ("GET", "/v1/evaluations/runs/{run_id}/samples"): [("/v1/evaluations/runs/r/samples?page_size=5000", None, 400,
                                                        "page_size")],
    ("GET", "/v1/evaluations/runs/{run_id}/events"): [("/v1/evaluations/runs/r/events?after=-1", None, 400, "after")],
    ("POST", "/v1/evaluations/experiments"): [("/v1/evaluations/experiments",
                                               {"base": {"tasks": ["t"]}, "variants": [{"name": "a"}]}, 400, "variants")],
    ("POST", "/v1/evaluations/comparisons"): [("/v1/evaluations/comparisons", {"run_ids": ["a"]}, 400, "run_ids")],
    ("GET", "/tokenizer_info"): NO_INPUT,
    ("POST", "/tokenize"): [("/tokenize", {"add_special_tokens": False}, 400, "prompt")],
    ("POST", "/detokenize"): [("/detokenize", {"tokens": [-1]}, 400, "tokens[0]")],
    ("POST", "/generate"): [("/generate", {"inputs": ""}, 422, "inputs"),
                            ("/generate", {"inputs": "x", "parameters": {"truncate": 5}}, 422, "parameters.truncate")],
    ("POST", "/generate_stream"): [("/generate_stream", {"inputs": "x", "parameters": {"top_n_tokens": 99}}, 422,
                                    "parameters.top_n_tokens")],
    ("POST", "/"): [("/", {"inputs": "x", "parameters": {"best_of": 2}}, 422, "parameters.best_of")],
}

ROWS = [(method, template, *row) for (method, template), rows in TABLE.items() if rows != NO_INPUT
        for row in rows]


def test_every_route_has_rows():
    schema = build_app(GatewaySettings(targets={})).openapi()
    routes = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    assert routes - set(TABLE) == set(), "add bad-input rows for these routes"
    assert set(TABLE) - routes == set(), "these rows name routes that do not exist"


@pytest.mark.parametrize(("method", "template", "url", "body", "status", "param"), ROWS,
                         ids=[f"{r[0]} {r[2]} {json.dumps(r[3])[:40]}" for r in ROWS])
async def test_bad_input(client, method, template, url, body, status, param):
    r = await client.request(method, url, **({"json": body} if body is not None else {}))
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    if template in ("/generate", "/generate_stream", "/"):  # TGI's shape: {"error": "<param>: ...", "error_type"}
        assert error.startswith(f"{param}: ") and r.json()["error_type"] == "validation"
        return
    assert set(error) == {"message", "type", "code", "param", "trace_id"} and error["message"]
    assert error["param"] == param, error


@pytest.mark.parametrize(("path", "status"), [("/v1/tokenize", 400), ("/generate", 422), ("/", 422)])
async def test_a_body_that_is_not_utf8_is_a_validation_error(client, path, status):
    # Was FastAPI's bare "error parsing the body" (400) on every route, undocumented on the TGI ones.
    r = await client.post(path, content=b"\xff\xfe{\x00", headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    message = r.json()["error"] if status == 422 else r.json()["error"]["message"]
    assert "JSON" in message
