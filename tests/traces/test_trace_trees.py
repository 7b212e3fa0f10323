"""Traces a user can read, checked on the whole path a request takes.

The suite runs in this process: the real tokenizer, embedding (all-MiniLM-L6-v2), inference (SmolLM2 on
torch) and retrieval services, each on its own gRPC server with its own tracer provider (so each span
carries its service's name), and the gateway under uvicorn in front of them. All providers export into one
in-memory exporter, and a span processor tracks which spans are open. Requests go through HTTP like a
user's: a streamed chat and a streamed RAG answer must each be ONE connected tree with the expected
services and GenAI attributes; a client that disconnects mid-stream still leaves no span open; health
checks and scrapes leave no span at all.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from genai_core.deferred import Deferred
from genai_core.telemetry import set_capture_content
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")
TENANT = {"X-Tenant": "acme"}
DOC = "Berlin is the capital of Germany. The Brandenburg Gate is in Berlin. Paris is the capital of France."


class OpenSpans(SpanProcessor):
    """The spans started and not yet ended, by trace id."""

    def __init__(self) -> None:
        self.open: dict[int, set[str]] = {}

    def on_start(self, span, parent_context=None) -> None:
        self.open.setdefault(span.context.trace_id, set()).add(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        names = self.open.get(span.context.trace_id, set())
        names.discard(span.name)


@dataclass
class Suite:
    url: str
    exporter: InMemorySpanExporter
    live: OpenSpans

    def trace(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]

    async def settled(self, trace_id: str, services: set[str], timeout: float = 20.0) -> list[ReadableSpan]:
        """The trace's spans once the expected services have reported and no span is open any more."""
        for _ in range(int(timeout / 0.05)):
            found = self.trace(trace_id)
            if services <= {_service(s) for s in found} and not self.live.open.get(int(trace_id, 16)):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"trace {trace_id}: open {self.live.open.get(int(trace_id, 16))}, "
                             f"finished {[(s.name, _service(s)) for s in self.trace(trace_id)]}")


def _service(span: ReadableSpan) -> str:
    return span.resource.attributes["service.name"]


def _provider(name: str, exporter: InMemorySpanExporter, live: OpenSpans) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(live)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def _retrieval(stack: AsyncExitStack, data: Path, provider: TracerProvider, targets: dict[str, str]) -> str:
    """The retrieval service over a fresh store, as its composition root builds it, calling the others through
    channels traced as its own."""
    from genai_core.downstream import Downstream
    from genai_core.settings import DownstreamSettings
    from genai_retrieval.clients import ChatClient, EmbeddingClient, PackingClient
    from genai_retrieval.pipelines import Pipelines
    from genai_retrieval.servicer import service_spec
    from genai_retrieval.settings import PREFIX, RetrievalSettings
    from genai_retrieval.store import open_store

    settings = RetrievalSettings(data_dir=data, chunk_size_tokens=64, chunk_overlap_tokens=8, answer_max_new_tokens=12)
    downstream = Downstream(DownstreamSettings({n: targets[n] for n in ("embedding", "inference", "tokenizer")}),
                            caller_prefix=PREFIX, tracer_provider=provider)
    stack.push_async_callback(downstream.close)
    store = open_store(data)
    stack.callback(store.close)
    deferred = Deferred("retrieval")
    deferred.set(Pipelines.build(settings, store, EmbeddingClient(downstream), ChatClient(downstream),
                                 PackingClient(downstream)))
    server, _ = await stack.enter_async_context(running_server([service_spec(deferred)], tracer_provider=provider))
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
async def suite(tmp_path_factory) -> AsyncIterator[Suite]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from genai_embedding.embedder import Embedder
    from genai_embedding.servicer import service_spec as embedding_spec
    from genai_embedding.settings import EmbeddingSettings
    from genai_inference import backends
    from genai_inference.generation import Inference
    from genai_inference.metrics import InferenceMetrics
    from genai_inference.registry import ModelRegistry
    from genai_inference.servicer import service_spec as inference_spec
    from genai_inference.settings import InferenceSettings
    from genai_tokenizer.registry import TokenizerRegistry
    from genai_tokenizer.servicer import service_spec as tokenizer_spec
    from genai_tokenizer.settings import TokenizerSettings

    torch.set_num_threads(2)
    exporter, live = InMemorySpanExporter(), OpenSpans()
    providers = {n: _provider(n, exporter, live) for n in ("tokenizer", "embedding", "inference", "retrieval", "gateway")}
    registry = TokenizerRegistry(TokenizerSettings(data_dir=tmp_path_factory.mktemp("tok"), cache_dir=CACHE))
    registry.load()
    embedder = Embedder.load(EmbeddingSettings(cache_dir=CACHE))
    await embedder.warmup()
    inference_settings = InferenceSettings(cache_dir=CACHE, data_dir=tmp_path_factory.mktemp("inf"),
                                           max_batch_size=4, max_new_tokens=64)
    built = backends.build(inference_settings, InferenceMetrics())
    await built.backend.start()
    models = {"embedding": Deferred("embedding"), "inference": Deferred("inference")}
    models["embedding"].set(embedder)
    models["inference"].set(ModelRegistry.around(Inference(built.backend, built.tokenizer, inference_settings)))
    specs = {"tokenizer": tokenizer_spec(registry), "embedding": embedding_spec(models["embedding"]),
             "inference": inference_spec(models["inference"])}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(built.backend.close)
        stack.push_async_callback(embedder.close)
        targets = {}
        for name, spec in specs.items():
            server, _ = await stack.enter_async_context(running_server([spec], tracer_provider=providers[name]))
            targets[name] = f"127.0.0.1:{server.port}"
        targets["retrieval"] = await _retrieval(stack, tmp_path_factory.mktemp("retrieval"), providers["retrieval"],
                                                targets)
        url = await stack.enter_async_context(serve_gateway(GatewaySettings(targets=targets), providers["gateway"]))
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            assert (await http.post("/v1/collections", json={"name": "kb"}, headers=TENANT)).status_code == 201
            r = await http.post("/v1/collections/kb/documents", headers=TENANT,
                                json={"documents": [{"id": "cities", "text": DOC}]})
            assert r.status_code == 200, r.text
        yield Suite(url, exporter, live)
    for provider in providers.values():
        provider.shutdown()


def _tree(spans: list[ReadableSpan]) -> tuple[ReadableSpan, dict[int, list[ReadableSpan]]]:
    """The one root and each span's children; fails if the spans are not one connected tree."""
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert len(roots) == 1, f"not one tree: roots {[r.name for r in roots]}"
    children: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        if s.parent is not None:
            children.setdefault(s.parent.span_id, []).append(s)
    return roots[0], children


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {sorted(s.name for s in spans)}"
    return found[0]


def _under(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None and child.parent.span_id == parent.context.span_id, (
        f"{child.name} is not under {parent.name}")


async def _sse(http: httpx.AsyncClient, path: str, body: dict, headers: dict | None = None) -> tuple[str, list]:
    async with http.stream("POST", path, json=body, headers=headers or {}) as reply:
        assert reply.status_code == 200, await reply.aread()
        trace_id = reply.headers["x-trace-id"]
        lines = [line async for line in reply.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return trace_id, [json.loads(line[6:]) for line in lines[:-1]]


async def test_a_streamed_chat_is_one_tree_with_an_llm_span(suite):
    from genai_inference.settings import InferenceSettings

    async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
        trace_id, chunks = await _sse(http, "/v1/chat/completions", {
            "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": 8, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    usage = chunks[-1]["usage"]
    spans = await suite.settled(trace_id, {"gateway", "inference"})
    root, _ = _tree(spans)
    assert sorted(s.name for s in spans) == [
        "gateway POST /v1/chat/completions", "gateway → inference.ChatStream", "inference.ChatStream"]
    assert root.name == "gateway POST /v1/chat/completions" and root.kind is SpanKind.SERVER
    client, server = _one(spans, "gateway → inference.ChatStream"), _one(spans, "inference.ChatStream")
    _under(client, root)
    _under(server, client)
    assert {s.attributes["service.name"] for s in spans} == {"gateway", "inference"}
    assert client.attributes["rpc.grpc.status_code"] == 0  # read to its end, not cancelled after `complete`
    llm = server.attributes
    assert llm["openinference.span.kind"] == "LLM" and llm["gen_ai.operation.name"] == "chat"
    assert llm["gen_ai.request.model"] == llm["llm.model_name"] == "smollm2-135m-instruct"
    assert llm["gen_ai.provider.name"] == InferenceSettings().engine.value and llm["gen_ai.request.stream"] is True
    assert llm["gen_ai.request.temperature"] == 0.0 and llm["gen_ai.request.max_tokens"] == 8
    assert llm["gen_ai.usage.input_tokens"] == llm["llm.token_count.prompt"] == usage["prompt_tokens"]
    assert llm["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert llm["gen_ai.response.finish_reasons"] in (("length",), ("stop",))
    (first,) = [e for e in server.events if e.name == "gen_ai.first_token"]
    assert 0 < first.attributes["gen_ai.response.time_to_first_chunk"] < (server.end_time - server.start_time) / 1e9
    assert "gen_ai.input.messages" not in llm and "output.value" not in llm  # no content unless opted in
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)


async def test_a_streamed_rag_answer_is_one_tree_across_five_services(suite):
    async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
        trace_id, events = await _sse(http, "/v1/rag/answer", {
            "collection": "kb", "question": "What is the capital of Germany?", "max_tokens": 12, "stream": True},
            TENANT)
    assert events[0]["type"] == "contexts" and events[-1]["type"] == "complete"
    spans = await suite.settled(trace_id, {"gateway", "retrieval", "embedding", "tokenizer", "inference"})
    root, _ = _tree(spans)
    assert root.name == "gateway POST /v1/rag/answer"
    assert {_service(s) for s in spans} == {"gateway", "retrieval", "embedding", "tokenizer", "inference"}
    answer = _one(spans, "retrieval.AnswerStream")
    _under(_one(spans, "gateway → retrieval.AnswerStream"), root)
    _under(answer, _one(spans, "gateway → retrieval.AnswerStream"))
    assert answer.attributes["openinference.span.kind"] == "CHAIN"
    assert answer.attributes["gen_ai.operation.name"] == "invoke_workflow"
    search = _one(spans, "retrieval.search kb")
    _under(search, answer)
    s = search.attributes
    assert s["openinference.span.kind"] == "RETRIEVER" and s["gen_ai.operation.name"] == "retrieval"
    assert s["gen_ai.data_source.id"] == "acme/kb" and s["genai.retrieval.mode"] == "hybrid"
    contexts = events[0]["contexts"]
    assert s["retrieval.documents.0.document.id"] == contexts[0]["chunk"]["chunk_id"]
    assert json.loads(s["gen_ai.retrieval.documents"])[0]["id"] == contexts[0]["chunk"]["chunk_id"]
    assert s["genai.retrieval.embedding_tokens"] > 0 and "gen_ai.usage.input_tokens" not in s  # counted once
    assert "retrieval.documents.0.document.content" not in s and "input.value" not in s
    for stage in ("embed", "dense", "sparse", "fuse", "fetch"):
        _under(_one(spans, f"retrieval.search.{stage}"), search)
    embed = _one(spans, "embedding.Embed")
    _under(_one(spans, "retrieval → embedding.Embed"), _one(spans, "retrieval.search.embed"))
    assert embed.attributes["openinference.span.kind"] == "EMBEDDING"
    assert embed.attributes["embedding.model_name"] == "all-minilm-l6-v2"
    assert embed.attributes["gen_ai.embeddings.dimension.count"] == 384
    pack = _one(spans, "tokenizer.PackContext")
    _under(_one(spans, "retrieval → tokenizer.PackContext"), answer)
    assert pack.attributes["service.name"] == "tokenizer"
    llm = _one(spans, "inference.ChatStream")
    _under(_one(spans, "retrieval → inference.ChatStream"), answer)
    assert llm.attributes["openinference.span.kind"] == "LLM"
    assert llm.attributes["gen_ai.usage.output_tokens"] == events[-1]["usage"]["completion_tokens"]
    assert not [x.name for x in spans if x.name.endswith(("http send", "http receive"))]
    assert all(x.status.status_code is not StatusCode.ERROR for x in spans)


async def test_with_content_capture_the_question_passages_prompt_and_answer_are_recorded(suite):
    set_capture_content(True)
    try:
        async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
            trace_id, events = await _sse(http, "/v1/rag/answer", {
                "collection": "kb", "question": "What is the capital of France?", "max_tokens": 12, "stream": True},
                TENANT)
        spans = await suite.settled(trace_id, {"gateway", "retrieval", "embedding", "tokenizer", "inference"})
    finally:
        set_capture_content(False)
    answer = _one(spans, "retrieval.AnswerStream").attributes
    assert answer["input.value"] == "What is the capital of France?"
    assert answer["output.value"] == "".join(e["text"] for e in events if e["type"] == "delta")
    search = _one(spans, "retrieval.search kb").attributes
    assert search["gen_ai.retrieval.query.text"] == "What is the capital of France?"
    assert "Paris" in search["retrieval.documents.0.document.content"]
    llm = _one(spans, "inference.ChatStream").attributes
    messages = json.loads(llm["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"] and "Paris" in messages[1]["parts"][0]["content"]
    assert llm["llm.input_messages.1.message.role"] == "user"
    assert json.loads(llm["gen_ai.output.messages"])[0]["role"] == "assistant"
    assert _one(spans, "embedding.Embed").attributes["embedding.embeddings.0.embedding.text"] == (
        "What is the capital of France?")


async def test_a_client_that_disconnects_mid_stream_leaves_no_span_open(suite):
    async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
        async with http.stream("POST", "/v1/chat/completions", json={
                "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 64, "temperature": 0.8, "stream": True}) as reply:
            trace_id = reply.headers["x-trace-id"]
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    break  # one chunk, then the client goes away
    spans = await suite.settled(trace_id, {"gateway", "inference"})
    _tree(spans)
    assert not suite.live.open.get(int(trace_id, 16))
    server = _one(spans, "inference.ChatStream")
    assert server.attributes["rpc.grpc.status_code"] == 1  # CANCELLED: generation stopped, not run to 64 tokens
    assert server.status.status_code is StatusCode.UNSET  # the caller left; not a server fault
    assert [e.name for e in server.events][-1] == "cancelled"
    client = _one(spans, "gateway → inference.ChatStream")
    assert client.status.status_code is StatusCode.UNSET and "cancelled" in [e.name for e in client.events]


async def test_health_checks_and_scrapes_make_no_spans(suite):
    before = len(suite.exporter.get_finished_spans())
    async with httpx.AsyncClient(base_url=suite.url, timeout=30) as http:
        for _ in range(3):
            ready = await http.get("/readyz")  # the gateway checks every backend's gRPC health
            assert ready.status_code == 200 and set(ready.json()["backends"]) == {
                "tokenizer", "embedding", "inference", "retrieval"}
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
    await asyncio.sleep(0.3)
    assert suite.exporter.get_finished_spans()[before:] == ()
