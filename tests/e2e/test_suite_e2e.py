"""End to end: the suite as `make run` starts it, driven over HTTP and gRPC like a user would."""

from __future__ import annotations

import time

import grpc
import httpx
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def test_ready_and_tokenize_over_http(suite):
    ready = httpx.get(f"{suite.base_url}/readyz").json()
    assert ready == {
        "status": "ready",
        "backends": {"tokenizer": "SERVING", "inference": "SERVING", "embedding": "SERVING", "retrieval": "SERVING",
                     "agent": "SERVING", "evaluation": "SERVING", "finetune": "SERVING"},
        "not_ready": [],
    }
    reply = httpx.post(f"{suite.base_url}/v1/tokenize", json={"input": "Hello world", "return_tokens": True})
    assert reply.status_code == 200
    assert reply.json()["data"][0]["ids"] == [19556, 905]
    assert reply.json()["data"][0]["tokens"] == ["Hello", "Ġworld"]


def test_chat_template_over_http_and_grpc_agree(suite):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    http = httpx.post(f"{suite.base_url}/v1/chat/template", json={"messages": messages}).json()
    with grpc.insecure_channel(suite.tokenizer_target) as channel:
        direct = pb_grpc.TokenizerServiceStub(channel).RenderChatTemplate(
            pb.RenderChatTemplateRequest(
                messages=[pb.ChatMessage(role="user", content="What is 2+2?")], add_generation_prompt=True
            ),
            timeout=10,
        )
    assert http["text"] == direct.text
    assert http["ids"] == list(direct.ids)
    assert http["text"].endswith("<|im_start|>assistant\n")


def test_train_then_use_a_tokenizer(suite):
    corpus = [f"line {i}: the quick brown fox jumps over the lazy dog number {i % 17}" for i in range(300)]
    trained = httpx.post(
        f"{suite.base_url}/v1/tokenizers",
        json={"id": "e2e-bpe", "kind": "bpe", "vocab_size": 400, "texts": corpus},
        timeout=60,
    )
    assert trained.status_code == 201, trained.text
    info = trained.json()["tokenizer"]
    assert info["source"] == "trained" and info["vocab_size"] <= 400
    used = httpx.post(f"{suite.base_url}/v1/tokenize", json={"tokenizer": "e2e-bpe", "input": "the quick fox"})
    ids = used.json()["data"][0]["ids"]
    back = httpx.post(f"{suite.base_url}/v1/detokenize", json={"tokenizer": "e2e-bpe", "ids": ids}).json()
    assert back["data"][0]["text"] == "the quick fox"
    assert (suite.data_dir / "tokenizers" / "e2e-bpe" / "tokenizer.json").exists()
    listed = [t["id"] for t in httpx.get(f"{suite.base_url}/v1/tokenizers").json()["data"]]
    assert "e2e-bpe" in listed


def test_bad_input_keeps_the_suite_serving(suite):
    bad = httpx.post(f"{suite.base_url}/v1/detokenize", json={"ids": [[1, 10**9]]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_argument"
    missing = httpx.post(f"{suite.base_url}/v1/tokenize", json={"tokenizer": "nope", "input": "x"})
    assert missing.status_code == 404
    assert httpx.get(f"{suite.base_url}/readyz").status_code == 200


def test_one_trace_spans_gateway_and_tokenizer(suite):
    reply = httpx.post(
        f"{suite.base_url}/v1/tokenize",
        json={"input": "trace me"},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
    )
    assert reply.headers["x-trace-id"] == TRACE_ID
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spans = suite.sink.spans(TRACE_ID)
        if {"gateway", "tokenizer"} <= {s.service for s in spans} and len(spans) >= 3:
            break
        time.sleep(0.2)
    spans = suite.sink.spans(TRACE_ID)
    by_id = {s.span_id: s for s in spans}
    server_http = [s for s in spans if s.service == "gateway" and s.parent_span_id == PARENT_SPAN]
    assert server_http, f"no gateway span continues the caller's trace: {spans}"
    grpc_server = [s for s in spans if s.service == "tokenizer" and s.name == "tokenizer.Tokenize"]
    assert len(grpc_server) == 1, spans
    # The tokenizer's server span hangs under the gateway's client span, which hangs under the HTTP span.
    client = by_id[grpc_server[0].parent_span_id]
    assert client.service == "gateway" and client.name == "gateway → tokenizer.Tokenize"
    chain = client
    while chain.parent_span_id in by_id:
        chain = by_id[chain.parent_span_id]
    assert chain.parent_span_id == PARENT_SPAN and chain.service == "gateway"


def test_chat_through_the_openai_sdk_and_the_tgi_client(suite):
    from openai import OpenAI
    from text_generation import Client

    client = OpenAI(base_url=f"{suite.base_url}/v1", api_key="unused", timeout=120)
    models = [m.id for m in client.models.list().data]
    assert "smollm2-135m-instruct" in models
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=12,
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 12
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=12,
            stream=True,
        )
        if chunk.choices
    ]
    assert "".join(pieces) == reply.choices[0].message.content
    tgi = Client(suite.base_url, timeout=120).generate("The capital of France is", max_new_tokens=4)
    assert tgi.generated_text.strip()


def test_one_trace_spans_gateway_and_inference(suite):
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    httpx.post(
        f"{suite.base_url}/v1/completions",
        json={"model": "smollm2-135m-instruct", "prompt": "Hello", "max_tokens": 2, "temperature": 0},
        headers={"traceparent": f"00-{trace_id}-{PARENT_SPAN}-01"},
        timeout=120,
    ).raise_for_status()

    def linked() -> bool:  # each process exports its spans in its own batches: wait for both ends of the hop
        spans = suite.sink.spans(trace_id)
        ids = {s.span_id for s in spans}
        return any(s.service == "inference" and s.parent_span_id in ids for s in spans)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not linked():
        time.sleep(0.2)
    spans = suite.sink.spans(trace_id)
    server = [s for s in spans if s.service == "inference" and s.name == "inference.Generate"]
    assert len(server) == 1, spans
    parent = {s.span_id: s for s in spans}.get(server[0].parent_span_id)
    assert parent is not None and parent.service == "gateway", spans


def test_embeddings_through_the_openai_sdk(suite):
    from openai import OpenAI

    client = OpenAI(base_url=f"{suite.base_url}/v1", api_key="unused", timeout=60)
    texts = ["Paris is the capital of France.", "The cat sat on the mat."]
    as_base64 = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the SDK asks for base64
    as_float = client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    assert as_float.model == "all-minilm-l6-v2" and as_float.usage.prompt_tokens > 0
    assert [d.index for d in as_float.data] == [0, 1]
    for b64, flt in zip(as_base64.data, as_float.data, strict=True):
        assert len(flt.embedding) == 384 and abs(sum(x * x for x in flt.embedding) - 1) < 1e-3  # normalised
        assert max(abs(a - b) for a, b in zip(b64.embedding, flt.embedding, strict=True)) < 1e-6
    paris, cat = (d.embedding for d in as_float.data)
    assert sum(a * b for a, b in zip(paris, cat, strict=True)) < 0.5  # unrelated sentences stay apart
