"""genai_core.spans: the GenAI / OpenInference attributes each call writes, and content only when opted in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from genai_core import spans
from genai_core.spans import Document, Operation
from genai_core.telemetry import capture_content, set_capture_content, with_provider
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A provider named 'inference' carried in the context, as the server interceptor does."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "inference"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = otel_context.attach(with_provider(otel_context.get_current(), provider))
    try:
        yield exporter
    finally:
        otel_context.detach(token)
        provider.shutdown()


@pytest.fixture
def content() -> Iterator[None]:
    before = capture_content()
    set_capture_content(True)
    yield
    set_capture_content(before)


def _annotated(exporter, operation: Operation, annotate) -> dict:
    with spans.start(operation) as span:
        annotate(span)
    (finished,) = exporter.get_finished_spans()
    exporter.clear()
    return dict(finished.attributes)


def _chat(span: spans.GenAISpan) -> None:
    span.request(model="smollm2", provider="onnxruntime", temperature=0.2, top_p=0.9, max_tokens=64,
                 stop_sequences=["\n\n"], seed=7, stream=True)
    span.input_messages(MESSAGES)
    span.usage(30, 12, cached_input_tokens=16).response(model="smollm2:support", id="r1", finish_reasons=["stop"])
    span.output_messages([{"role": "assistant", "content": "It is 21 C."}], ["stop"])


def test_an_llm_span_carries_the_genai_and_openinference_attributes_without_content(exporter):
    assert not capture_content()  # the default: no personal data in spans
    a = _annotated(exporter, Operation.CHAT, _chat)
    assert a["openinference.span.kind"] == "LLM" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "smollm2" and a["gen_ai.response.model"] == "smollm2:support"
    assert a["gen_ai.provider.name"] == "onnxruntime" and a["llm.provider"] == "onnxruntime"
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.stop_sequences"] == ("\n\n",) and a["gen_ai.request.seed"] == 7
    assert json.loads(a["llm.invocation_parameters"]) == {
        "max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n\n"]}
    assert a["gen_ai.usage.input_tokens"] == 30 and a["gen_ai.usage.output_tokens"] == 12
    assert a["gen_ai.usage.cache_read.input_tokens"] == 16
    assert (a["llm.token_count.prompt"], a["llm.token_count.completion"], a["llm.token_count.total"]) == (30, 12, 42)
    assert a["gen_ai.response.finish_reasons"] == ("stop",) and a["gen_ai.response.id"] == "r1"
    assert a["llm.model_name"] == "smollm2:support"  # what answered
    leaked = [k for k in a if "messages" in k or k.startswith(("input.", "output."))]
    assert leaked == [], leaked


def test_with_content_capture_messages_are_recorded_in_both_conventions(exporter, content):
    a = _annotated(exporter, Operation.CHAT, _chat)
    sent = json.loads(a["gen_ai.input.messages"])
    assert sent[1] == {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    assert sent[2]["parts"] == [{"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "21 C"}]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It is 21 C."}], "finish_reason": "stop"}]
    assert a["llm.input_messages.1.message.content"] == "Weather in Paris?"
    assert a["llm.input_messages.2.message.tool_calls.0.tool_call.function.name"] == "weather"
    assert json.loads(a["llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments"]) == {
        "city": "Paris"}
    assert a["llm.input_messages.3.message.tool_call_id"] == "c1"
    assert a["llm.output_messages.0.message.role"] == "assistant"
    assert a["output.value"] == "It is 21 C."


def test_first_token_is_an_event_with_the_time_to_first_chunk(exporter):
    with spans.start(Operation.CHAT) as span:
        span.first_token(0.25)
    (finished,) = exporter.get_finished_spans()
    (event,) = finished.events
    assert event.name == "gen_ai.first_token"
    assert event.attributes["gen_ai.response.time_to_first_chunk"] == 0.25
    assert finished.attributes["gen_ai.response.time_to_first_chunk"] == 0.25


def _documents(span: spans.GenAISpan) -> None:
    span.request(top_k=2, data_source="tenant/faq")
    span.query("capital of France?")
    span.documents([Document("c1", 0.9, "Paris is the capital.", {"document_id": "paris"}),
                    Document("c2", 0.4, "Lyon is a city.")])


def test_a_retriever_span_names_documents_and_scores_and_keeps_texts_back(exporter):
    a = _annotated(exporter, Operation.RETRIEVAL, _documents)
    assert a["openinference.span.kind"] == "RETRIEVER" and a["gen_ai.operation.name"] == "retrieval"
    assert a["gen_ai.data_source.id"] == "tenant/faq" and a["gen_ai.request.top_k"] == 2
    assert json.loads(a["gen_ai.retrieval.documents"]) == [{"id": "c1", "score": 0.9}, {"id": "c2", "score": 0.4}]
    assert a["retrieval.documents.0.document.id"] == "c1" and a["retrieval.documents.1.document.score"] == 0.4
    assert not [k for k in a if k.endswith((".content", ".metadata", "query.text")) or k == "input.value"]


def test_a_retriever_span_with_content_has_query_texts_and_metadata(exporter, content):
    a = _annotated(exporter, Operation.RETRIEVAL, _documents)
    assert a["input.value"] == a["gen_ai.retrieval.query.text"] == "capital of France?"
    assert a["retrieval.documents.0.document.content"] == "Paris is the capital."
    assert json.loads(a["retrieval.documents.0.document.metadata"]) == {"document_id": "paris"}


def test_a_reranker_span_uses_the_reranker_attributes(exporter, content):
    def rerank(span):
        span.request(model="minilm", top_k=1).query("q")
        span.input_documents([Document("0", content="a"), Document("1", content="b")])
        span.documents([Document("1", 0.8)])

    a = _annotated(exporter, Operation.RERANK, rerank)
    assert a["openinference.span.kind"] == "RERANKER" and a["reranker.model_name"] == "minilm"
    assert a["reranker.top_k"] == 1 and a["reranker.query"] == "q"
    assert a["reranker.input_documents.1.document.content"] == "b"
    assert a["reranker.output_documents.0.document.id"] == "1" and a["reranker.output_documents.0.document.score"] == 0.8


def test_an_embedding_span_counts_texts_and_records_them_only_with_content(exporter):
    def embed(span):
        span.request(model="all-minilm-l6-v2").embeddings(["a", "b", "c"], 384).usage(9)

    a = _annotated(exporter, Operation.EMBEDDINGS, embed)
    assert a["openinference.span.kind"] == "EMBEDDING" and a["embedding.model_name"] == "all-minilm-l6-v2"
    assert a["gen_ai.embeddings.dimension.count"] == 384 and a["genai.embedding.input_count"] == 3
    assert a["gen_ai.usage.input_tokens"] == 9 and "llm.token_count.prompt" not in a  # Phoenix sums LLM tokens only
    assert not [k for k in a if k.startswith("embedding.embeddings")]
    set_capture_content(True)
    try:
        a = _annotated(exporter, Operation.EMBEDDINGS, embed)
    finally:
        set_capture_content(False)
    assert a["embedding.embeddings.2.embedding.text"] == "c"


def test_tool_and_agent_spans_for_the_agent_service(exporter, content):
    with spans.start(Operation.INVOKE_AGENT, "support") as agent:
        agent.agent("support", id="asst-1", conversation_id="thread-9")
        with spans.start(Operation.EXECUTE_TOOL, "weather") as tool:
            tool.tool("weather", call_id="c1", description="Current weather", arguments={"city": "Paris"})
            tool.tool_result({"celsius": 21})
    tool_span, agent_span = exporter.get_finished_spans()
    assert agent_span.name == "inference.invoke_agent support"
    assert tool_span.name == "inference.execute_tool weather"
    assert tool_span.parent.span_id == agent_span.context.span_id
    a, t = agent_span.attributes, tool_span.attributes
    assert a["openinference.span.kind"] == "AGENT" and a["gen_ai.agent.name"] == a["agent.name"] == "support"
    assert a["session.id"] == a["gen_ai.conversation.id"] == "thread-9"
    assert t["openinference.span.kind"] == "TOOL" and t["gen_ai.tool.name"] == t["tool.name"] == "weather"
    assert t["gen_ai.tool.call.id"] == "c1" and json.loads(t["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    assert json.loads(t["output.value"]) == {"celsius": 21}
    assert t["service.name"] == "inference"


def test_a_failing_step_is_an_error_span_and_the_error_propagates(exporter):
    with pytest.raises(ValueError, match="bad tool input"):
        with spans.start(Operation.EXECUTE_TOOL, "weather"):
            raise ValueError("bad tool input")
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert [e.name for e in finished.events] == ["exception"]


def test_lists_are_cut_to_keep_spans_readable(exporter):
    docs = [Document(f"c{i}", 1.0 - i / 100) for i in range(50)]
    a = _annotated(exporter, Operation.RETRIEVAL, lambda span: span.documents(docs))
    assert a["genai.documents.count"] == 50
    assert f"retrieval.documents.{spans.MAX_DOCUMENTS - 1}.document.id" in a
    assert f"retrieval.documents.{spans.MAX_DOCUMENTS}.document.id" not in a


def test_outside_a_recording_span_every_call_is_a_no_op():
    span = spans.current(Operation.CHAT)  # no current span at all
    assert span.span is trace.INVALID_SPAN
    span.request(model="m").usage(1, 2).documents([Document("x")]).first_token()
