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
JOB = {"model": "m", "training_file": "file-x"}
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
    ("GET", "/v1/agent/info"): NO_INPUT,
    ("GET", "/v1/agent/tools"): [("/v1/agent/tools?assistant_id=a", None, 503, None)],  # no agent backend here
    ("GET", "/v1/agent/threads/{thread_id}/checkpoints"): [("/v1/agent/threads/t/checkpoints?limit=0", None, 400,
                                                            "limit"),
                                                           ("/v1/agent/threads/t/checkpoints?limit=1001", None, 400,
                                                            "limit")],
    ("GET", "/v1/agent/threads/{thread_id}/checkpoints/{checkpoint_id}"): [("/v1/agent/threads/t/checkpoints/c", None,
                                                                            503, None)],
    ("GET", "/v1/agent/threads/{thread_id}/runs/{run_id}"): [("/v1/agent/threads/t/runs/r", None, 503, None)],
    ("GET", "/langgraph/ok"): NO_INPUT,
    ("GET", "/langgraph/info"): NO_INPUT,
    ("POST", "/langgraph/assistants"): [
        ("/langgraph/assistants", {}, 400, "graph_id"),
        ("/langgraph/assistants", {"graph_id": "react", "config": {"recursion_limit": 201}}, 400,
         "config.recursion_limit"),
        ("/langgraph/assistants", {"graph_id": "react", "context": {"model": "m"}}, 400, "context.model"),
        ("/langgraph/assistants", {"graph_id": "react", "context": {"max_steps": 2**40}}, 400, "context"),
    ],
    ("POST", "/langgraph/assistants/search"): [
        ("/langgraph/assistants/search", {"limit": 0}, 400, "limit"),
        ("/langgraph/assistants/search", {"limit": 794.0}, 400, "limit"),  # schemathesis' 500, issue 14's class
        ("/langgraph/assistants/search", {"offset": 5_916_105_397}, 400, "offset"),
    ],
    ("POST", "/langgraph/assistants/count"): [("/langgraph/assistants/count", {"metadata": [1]}, 400, "metadata")],
    ("GET", "/langgraph/assistants/{assistant_id}"): [("/langgraph/assistants/a", None, 503, None)],
    ("PATCH", "/langgraph/assistants/{assistant_id}"): [("/langgraph/assistants/a", {"name": 5}, 400, "name"),
                                                        ("/langgraph/assistants/a", {"metadata": {"n": 10**400}}, 400,
                                                         "metadata")],
    ("DELETE", "/langgraph/assistants/{assistant_id}"): [("/langgraph/assistants/a", None, 503, None)],
    ("POST", "/langgraph/threads"): [("/langgraph/threads", {"supersteps": [{}]}, 400, "supersteps"),
                                     ("/langgraph/threads", {"if_exists": "replace"}, 400, "if_exists")],
    ("POST", "/langgraph/threads/search"): [("/langgraph/threads/search", {"values": {"a": 1}}, 400, "values"),
                                            ("/langgraph/threads/search", {"offset": -1}, 400, "offset")],
    ("POST", "/langgraph/threads/count"): [("/langgraph/threads/count", {"status": "done"}, 400, "status")],
    ("GET", "/langgraph/threads/{thread_id}"): [("/langgraph/threads/t", None, 503, None)],
    ("PATCH", "/langgraph/threads/{thread_id}"): [("/langgraph/threads/t", {"metadata": "x"}, 400, "metadata")],
    ("DELETE", "/langgraph/threads/{thread_id}"): [("/langgraph/threads/t", None, 503, None)],
    ("GET", "/langgraph/threads/{thread_id}/state"): [("/langgraph/threads/t/state", None, 503, None)],
    ("GET", "/langgraph/threads/{thread_id}/state/{checkpoint_id}"): [("/langgraph/threads/t/state/c", None, 503,
                                                                       None)],
    ("POST", "/langgraph/threads/{thread_id}/state/checkpoint"): [("/langgraph/threads/t/state/checkpoint", {}, 400,
                                                                   "checkpoint")],
    ("POST", "/langgraph/threads/{thread_id}/state"): [
        ("/langgraph/threads/t/state", {"values": {"messages": [{"role": "robot"}]}}, 400, "values.messages[0].role")],
    ("POST", "/langgraph/threads/{thread_id}/history"): [("/langgraph/threads/t/history", {"limit": 0}, 400, "limit"),
                                                         ("/langgraph/threads/t/history", {"limit": 1001}, 400,
                                                          "limit")],
    ("POST", "/langgraph/threads/{thread_id}/runs"): [
        ("/langgraph/threads/t/runs", {}, 400, "assistant_id"),
        ("/langgraph/threads/t/runs", {"assistant_id": "react", "webhook": "http://hook"}, 400, "webhook")],
    ("POST", "/langgraph/runs"): [("/langgraph/runs", {"assistant_id": "react", "after_seconds": 5}, 400,
                                   "after_seconds")],
    ("POST", "/langgraph/threads/{thread_id}/runs/stream"): [
        ("/langgraph/threads/t/runs/stream", {"assistant_id": "react", "stream_mode": "debug"}, 400, "stream_mode")],
    ("POST", "/langgraph/runs/stream"): [
        ("/langgraph/runs/stream", {"assistant_id": "react", "stream_mode": ["values", "events"]}, 400,
         "stream_mode[1]")],
    ("POST", "/langgraph/threads/{thread_id}/runs/wait"): [
        ("/langgraph/threads/t/runs/wait", {"assistant_id": "react", "multitask_strategy": "rollback"}, 400,
         "multitask_strategy")],
    ("POST", "/langgraph/runs/wait"): [
        ("/langgraph/runs/wait", {"assistant_id": "react", "config": {"recursion_limit": 0}}, 400,
         "config.recursion_limit"),
        ("/langgraph/runs/wait", {"assistant_id": "react", "input": {"messages": [{"role": "user", "content": [
            {"text": 5}]}]}}, 400, "input.messages[0].content")],
    ("GET", "/langgraph/threads/{thread_id}/runs"): [("/langgraph/threads/t/runs?limit=0", None, 400, "limit"),
                                                     ("/langgraph/threads/t/runs?offset=4294967296", None, 400,
                                                      "offset"),
                                                     ("/langgraph/threads/t/runs?status=done", None, 400, "status")],
    ("GET", "/langgraph/threads/{thread_id}/runs/{run_id}"): [("/langgraph/threads/t/runs/r", None, 503, None)],
    ("DELETE", "/langgraph/threads/{thread_id}/runs/{run_id}"): [("/langgraph/threads/t/runs/r", None, 503, None)],
    ("POST", "/langgraph/threads/{thread_id}/runs/{run_id}/cancel"): [
        ("/langgraph/threads/t/runs/r/cancel?action=rollback", None, 400, "action"),
        ("/langgraph/threads/t/runs/r/cancel?wait=perhaps", None, 400, "wait")],
    ("GET", "/langgraph/threads/{thread_id}/runs/{run_id}/join"): [("/langgraph/threads/t/runs/r/join", None, 503,
                                                                    None)],
    ("GET", "/langgraph/threads/{thread_id}/runs/{run_id}/stream"): [
        ("/langgraph/threads/t/runs/r/stream?stream_mode=debug", None, 400, "stream_mode")],
    ("POST", "/v1/files"): [("/v1/files", {"file": "x.jsonl", "purpose": "fine-tune"}, 400, "file")],  # not multipart
    ("GET", "/v1/files"): [("/v1/files?limit=0", None, 400, "limit"), ("/v1/files?limit=101", None, 400, "limit")],
    ("GET", "/v1/files/{file_id}"): [("/v1/files/file-x", None, 503, None)],  # no fine-tune backend here
    ("GET", "/v1/files/{file_id}/content"): [("/v1/files/file-x/content", None, 503, None)],
    ("DELETE", "/v1/files/{file_id}"): [("/v1/files/file-x", None, 503, None)],
    ("POST", "/v1/fine_tuning/jobs"): [
        ("/v1/fine_tuning/jobs", {"model": "m"}, 400, "training_file"),
        ("/v1/fine_tuning/jobs", {**JOB, "seed": -1}, 400, "seed"),
        ("/v1/fine_tuning/jobs", {**JOB, "seed": 2**64}, 400, "seed"),
        ("/v1/fine_tuning/jobs", {**JOB, "suffix": "x" * 41}, 400, "suffix"),
        ("/v1/fine_tuning/jobs", {**JOB, "hyperparameters": {"n_epochs": 51}}, 400, "hyperparameters.n_epochs"),
        ("/v1/fine_tuning/jobs", {**JOB, "hyperparameters": {"batch_size": True}}, 400, "hyperparameters.batch_size"),
        ("/v1/fine_tuning/jobs", {**JOB, "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "learning_rate_multiplier": 0}}}}, 400, "method.supervised.hyperparameters.learning_rate_multiplier"),
        ("/v1/fine_tuning/jobs", {**JOB, "method": {"type": "dpo", "dpo": {"hyperparameters": {
            "max_steps": 2**64}}}}, 400, "method.dpo.hyperparameters.max_steps"),
        ("/v1/fine_tuning/jobs", {**JOB, "method": {"type": "lora", "lora": {"hyperparameters": {
            "rank": 10**400}}}}, 400, "method.lora.hyperparameters"),  # beyond a double: was a 500
        ("/v1/fine_tuning/jobs", {**JOB, "method": {"type": "lora", "lora": 4}}, 400, "method.lora"),
    ],
    ("GET", "/v1/fine_tuning/jobs"): [("/v1/fine_tuning/jobs?limit=0", None, 400, "limit")],
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): [("/v1/fine_tuning/jobs/ftjob-x", None, 503, None)],
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): [("/v1/fine_tuning/jobs/ftjob-x/cancel", None, 503, None)],
    ("POST", "/v1/fine_tuning/jobs/{job_id}/pause"): [("/v1/fine_tuning/jobs/ftjob-x/pause", None, 503, None)],
    ("POST", "/v1/fine_tuning/jobs/{job_id}/resume"): [("/v1/fine_tuning/jobs/ftjob-x/resume", None, 503, None)],
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): [
        ("/v1/fine_tuning/jobs/ftjob-x/events?limit=101", None, 400, "limit"),
        ("/v1/fine_tuning/jobs/ftjob-x/events?stream=true&after=4%C2%B2", None, 400, "after"),  # "4²": was a 500
        ("/v1/fine_tuning/jobs/ftjob-x/events?stream=true&after=99999999999999999999", None, 400, "after"),
    ],
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): [
        ("/v1/fine_tuning/jobs/ftjob-x/checkpoints?limit=0", None, 400, "limit")],
    ("DELETE", "/v1/models/{model}"): [("/v1/models/ft:m:x:ftjob-x", None, 503, None)],
    ("GET", "/v1/finetune/info"): NO_INPUT,
    ("POST", "/v1/finetune/jobs"): [
        ("/v1/finetune/jobs", {}, 400, "training_dataset_id"),
        ("/v1/finetune/jobs", {"training_dataset_id": "f", "hyperparameters": {"rank": 4}}, 400, "hyperparameters.rank"),
        ("/v1/finetune/jobs", {"training_dataset_id": "f", "hyperparameters": {"max_seq_length": 8}}, 400,
         "hyperparameters.max_seq_length"),
        ("/v1/finetune/jobs", {"training_dataset_id": "f", "method_config": {"rank": 10**400}}, 400, "method_config"),
        ("/v1/finetune/jobs", {"training_dataset_id": "f", "metadata": {f"k{i}": "v" for i in range(17)}}, 400,
         "metadata"),
    ],
    ("GET", "/v1/finetune/artifacts"): [("/v1/finetune/artifacts?limit=101", None, 400, "limit")],
    ("GET", "/v1/finetune/artifacts/{artifact_id}"): [("/v1/finetune/artifacts/art-x", None, 503, None)],
    ("DELETE", "/v1/finetune/artifacts/{artifact_id}"): [("/v1/finetune/artifacts/art-x", None, 503, None)],
    ("POST", "/v1/images/generations"): [
        ("/v1/images/generations", {"model": "m", "prompt": "7", "n": 17}, 400, "n"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "n": "2"}, 400, "n"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "size": "\u0663x\u0663"}, 400, "size"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "size": "99999999999x99999999999"}, 400, "size"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "size": "32x64"}, 400, "size"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "steps": 1001}, 400, "steps"),
        ("/v1/images/generations", {"model": "m", "prompt": "7", "response_format": "url"}, 400, "response_format"),
    ],
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


@pytest.mark.parametrize(("files", "data", "param"), [
    ({"purpose": (None, "fine-tune")}, {}, "file"),  # a multipart form without a file part
    ({"file": (None, "a plain field")}, {"purpose": "fine-tune"}, "file"),
    ({"file": ("a.jsonl", b"{}")}, {}, "purpose"),
    ({"file": ("a.jsonl", b"{}")}, {"purpose": "batch"}, "purpose"),
    ([("file", ("a.jsonl", b"{}")), ("file", ("b.jsonl", b"{}"))], {"purpose": "fine-tune"}, "file"),
    ({"file": ("a.jsonl", b"{}")}, {"purpose": "fine-tune", "expires_after[seconds]": "3600"}, "expires_after"),
    ({"file": ("a.jsonl", b"{}")}, {"purpose": "fine-tune", "purpose_": "x"}, "purpose_"),
], ids=["no file", "file not a file", "no purpose", "unknown purpose", "two files", "expires_after", "unknown field"])
async def test_file_upload_form_is_checked_before_the_service(client, files, data, param):
    # POST /v1/files is multipart (the table sends JSON): the form's shape is the gateway's, the records the service's.
    r = await client.post("/v1/files", files=files, data=data)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text
