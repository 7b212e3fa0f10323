"""What a span did, in GenAI terms: the one helper every service uses to annotate its spans.

It writes OpenTelemetry's GenAI semantic conventions (``gen_ai.*``, for any tracing backend) and the
OpenInference attributes that Arize Phoenix reads (``openinference.span.kind``, ``llm.*``, ``embedding.*``,
``retrieval.*``, ``reranker.*``, ``tool.*``, ``agent.*``, ``input.value``/``output.value``), so its LLM,
retriever and agent views work. Each fact is given once, here; services never spell attribute names.

Text that may hold personal data (prompts, completions, queries, document texts, tool arguments and
results, embedded texts) is written only when the operator opted in with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (``genai_core.telemetry.capture_content``);
counts, models, parameters, ids and scores always are.

Annotate the span a handler runs in (its RPC's server span) with ``current``:

    >>> from genai_core import spans
    >>> span = spans.current(spans.Operation.CHAT)
    >>> _ = span.request(model="smollm2-135m-instruct", provider="onnxruntime", temperature=0.0, max_tokens=64)
    >>> _ = span.input_messages([{"role": "user", "content": "Hi"}])   # only with content capture on
    >>> span.first_token()                                            # the TTFT event
    >>> _ = span.usage(9, 4).response(finish_reasons=["stop"]).output_text("Hello!")

Open a child span for a step inside the service (a tool call, an agent turn) with ``start``, and time a
pipeline stage (a span, and the ``genai_stage_duration_seconds`` histogram) with ``stage``:

    >>> with spans.start(spans.Operation.EXECUTE_TOOL, "get_weather") as tool:
    ...     _ = tool.tool("get_weather", call_id="call_1", arguments={"city": "Paris"})
    ...     _ = tool.tool_result({"temperature": 21})
    >>> with spans.stage("search", "dense"):
    ...     pass

Outside a recording span every call is a cheap no-op, so domain code needs no guard. ``start`` and ``stage``
make their span current for the block: keep a block within one step of a stream (no ``yield`` inside it),
as a context attached in one task cannot be detached in another.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from genai_core.telemetry import capture_content, service_name, tracer

# Lists are cut to these lengths: an OpenTelemetry span keeps 128 attributes by default, and a trace is
# for reading, not for archiving every passage.
MAX_DOCUMENTS = 20
MAX_MESSAGES = 32
MAX_TEXTS = 16
MAX_CHARS = 16_384  # per captured text

STAGE_ATTRIBUTE = "genai.stage"
PIPELINE_ATTRIBUTE = "genai.pipeline"


class Operation(enum.Enum):
    """What a span does: its ``gen_ai.operation.name`` and its OpenInference span kind."""

    CHAT = ("chat", "LLM")
    TEXT_COMPLETION = ("text_completion", "LLM")
    EMBEDDINGS = ("embeddings", "EMBEDDING")
    RETRIEVAL = ("retrieval", "RETRIEVER")
    RERANK = ("rerank", "RERANKER")
    EXECUTE_TOOL = ("execute_tool", "TOOL")
    INVOKE_AGENT = ("invoke_agent", "AGENT")
    WORKFLOW = ("invoke_workflow", "CHAIN")  # a pipeline of steps: a RAG answer, an agent graph
    EVALUATE = ("evaluate", "EVALUATOR")
    STEP = ("", "CHAIN")  # no GenAI operation of its own: an API request at the edge, a pipeline stage

    @property
    def operation_name(self) -> str:
        return self.value[0]

    @property
    def kind(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class Document:
    """A retrieved or reranked passage: id and score always, text and metadata as captured content."""

    id: str
    score: float | None = None
    content: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else _json(value)
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…"


def _parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI-shaped message as GenAI convention parts (text, tool calls, a tool's response)."""
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if message.get("role") == "tool":
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id", ""),
                      "response": _text(content or "")})
    elif content:
        parts.append({"type": "text", "content": _text(content)})
    for call in message.get("tool_calls") or ():
        function = call.get("function", call)
        parts.append({"type": "tool_call", "id": call.get("id", ""), "name": function.get("name", ""),
                      "arguments": function.get("arguments")})
    return parts


class GenAISpan:
    """The GenAI annotations of one span; every method returns the span for chaining."""

    def __init__(self, span: Span, operation: Operation) -> None:
        self.span = span
        self.operation = operation
        self._on = span.is_recording()
        if self._on:
            attributes = {"openinference.span.kind": operation.kind}
            if operation.operation_name:
                attributes["gen_ai.operation.name"] = operation.operation_name
            span.set_attributes(attributes)

    def _set(self, attributes: Mapping[str, Any]) -> GenAISpan:
        if self._on:
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        return self

    def _content(self, attributes: Mapping[str, Any]) -> GenAISpan:
        return self._set(attributes) if capture_content() else self

    @property
    def captures(self) -> bool:
        """Whether content would be recorded: skip preparing prompts and outputs when it would not."""
        return self._on and capture_content()

    @property
    def _llm(self) -> bool:
        return self.operation.kind == "LLM"

    # --------------------------------------------------------------------------------------- request

    def request(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        stop_sequences: Sequence[str] = (),
        seed: int | None = None,
        choice_count: int | None = None,
        stream: bool | None = None,
        data_source: str | None = None,
        **parameters: Any,
    ) -> GenAISpan:
        """The request's model and parameters (``gen_ai.request.*``); ``parameters`` are further
        invocation parameters (JSON in ``llm.invocation_parameters``/``embedding.invocation_parameters``)."""
        if not self._on:
            return self
        sampling = {
            "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
            "frequency_penalty": frequency_penalty, "presence_penalty": presence_penalty, "seed": seed,
        }
        attributes: dict[str, Any] = {f"gen_ai.request.{k}": v for k, v in sampling.items()}
        attributes.update({
            "gen_ai.request.model": model or None,
            "gen_ai.request.choice.count": choice_count if choice_count and choice_count != 1 else None,
            "gen_ai.request.stream": stream,
            "gen_ai.request.stop_sequences": list(stop_sequences) or None,
            "gen_ai.provider.name": provider or None,
            "gen_ai.system": provider or None,  # the older name, still read by some backends
            "gen_ai.data_source.id": data_source or None,
        })
        invocation = {k: v for k, v in {**sampling, **parameters}.items() if v is not None}
        if stop_sequences:
            invocation["stop"] = list(stop_sequences)
        kind = self.operation.kind
        if kind == "LLM":
            attributes.update({"llm.model_name": model or None, "llm.provider": provider or None,
                               "llm.system": provider or None})
            attributes["llm.invocation_parameters"] = _json(invocation) if invocation else None
        elif kind == "EMBEDDING":
            attributes["embedding.model_name"] = model or None
            attributes["embedding.invocation_parameters"] = _json(invocation) if invocation else None
        elif kind == "RERANKER":
            attributes.update({"reranker.model_name": model or None, "reranker.top_k": top_k})
        return self._set(attributes)

    def response(self, *, model: str | None = None, id: str | None = None,  # noqa: A002 - the convention's name
                 finish_reasons: Sequence[str] = ()) -> GenAISpan:
        """What answered (``gen_ai.response.model``/``.id``) and why each choice stopped."""
        attributes: dict[str, Any] = {
            "gen_ai.response.model": model or None, "gen_ai.response.id": id or None,
            "gen_ai.response.finish_reasons": list(finish_reasons) or None,
        }
        if self._llm:
            attributes["llm.model_name"] = model or None
            attributes["llm.finish_reason"] = finish_reasons[0] if finish_reasons else None
        return self._set(attributes)

    def usage(self, input_tokens: int | None = None, output_tokens: int | None = None,
              cached_input_tokens: int | None = None) -> GenAISpan:
        """Token counts (``gen_ai.usage.*``; on LLM spans also ``llm.token_count.*``, which Phoenix sums)."""
        attributes: dict[str, Any] = {
            "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.usage.cache_read.input_tokens": cached_input_tokens or None,
        }
        if self._llm:
            attributes.update({
                "llm.token_count.prompt": input_tokens, "llm.token_count.completion": output_tokens,
                "llm.token_count.prompt_details.cache_read": cached_input_tokens or None,
            })
            if input_tokens is not None or output_tokens is not None:
                attributes["llm.token_count.total"] = (input_tokens or 0) + (output_tokens or 0)
        return self._set(attributes)

    def first_token(self, seconds: float | None = None) -> None:
        """The time to the first token (or chunk): a ``gen_ai.first_token`` event and the
        ``gen_ai.response.time_to_first_chunk`` attribute. Call it when the first token leaves (the event is
        now, the time is since the span started), or afterwards with the measured ``seconds`` (the event is
        placed that long after the span's start)."""
        if not self._on:
            return
        start = getattr(self.span, "start_time", None)
        at = None
        if seconds is None:
            seconds = (time.time_ns() - start) / 1e9 if start else None
        elif start:
            at = start + int(seconds * 1e9)
        attributes = {"gen_ai.response.time_to_first_chunk": seconds} if seconds is not None else {}
        self.span.add_event("gen_ai.first_token", attributes, timestamp=at)
        self._set(attributes)

    # ------------------------------------------------------------------------------- content (opt-in)

    def input_messages(self, messages: Sequence[Mapping[str, Any]]) -> GenAISpan:
        """The chat sent to the model, as OpenAI-shaped dicts (role, content, tool_calls, tool_call_id)."""
        if not (self._on and capture_content()):
            return self
        messages = list(messages)[:MAX_MESSAGES]
        attributes: dict[str, Any] = {
            "gen_ai.input.messages": _json([{"role": m.get("role", ""), "parts": _parts(m)} for m in messages]),
            "input.value": _text([{k: v for k, v in m.items() if v} for m in messages]),
            "input.mime_type": "application/json",
        }
        for i, m in enumerate(messages):
            attributes.update(_oi_message(f"llm.input_messages.{i}.message", m))
        return self._set(attributes)

    def output_messages(self, messages: Sequence[Mapping[str, Any]],
                        finish_reasons: Sequence[str] = ()) -> GenAISpan:
        """The model's answers, one OpenAI-shaped message per choice."""
        if not (self._on and capture_content()):
            return self
        messages = list(messages)[:MAX_MESSAGES]
        out = []
        for i, m in enumerate(messages):
            entry: dict[str, Any] = {"role": m.get("role", "assistant"), "parts": _parts(m)}
            if i < len(finish_reasons):
                entry["finish_reason"] = finish_reasons[i]
            out.append(entry)
        attributes: dict[str, Any] = {"gen_ai.output.messages": _json(out)}
        if len(messages) == 1 and messages[0].get("content"):
            attributes.update({"output.value": _text(messages[0]["content"]), "output.mime_type": "text/plain"})
        else:
            attributes.update({"output.value": _text(messages), "output.mime_type": "application/json"})
        for i, m in enumerate(messages):
            attributes.update(_oi_message(f"llm.output_messages.{i}.message", {"role": "assistant", **m}))
        return self._set(attributes)

    def input_text(self, text: str) -> GenAISpan:
        """A plain-text input (a completion prompt, a question): ``input.value``."""
        attributes: dict[str, Any] = {"input.value": _text(text), "input.mime_type": "text/plain"}
        if self._llm:
            attributes["gen_ai.input.messages"] = _json([{"role": "user", "parts": [
                {"type": "text", "content": _text(text)}]}])
        return self._content(attributes)

    def output_text(self, text: str) -> GenAISpan:
        """A plain-text output (a completion, an answer): ``output.value``."""
        attributes: dict[str, Any] = {"output.value": _text(text), "output.mime_type": "text/plain"}
        if self._llm:
            attributes["gen_ai.output.messages"] = _json([{"role": "assistant", "parts": [
                {"type": "text", "content": _text(text)}]}])
        return self._content(attributes)

    def tools(self, definitions: Sequence[Mapping[str, Any]]) -> GenAISpan:
        """The tools offered to the model (``{"name", "description", "parameters"}`` each)."""
        if not (self._on and capture_content()):
            return self
        attributes: dict[str, Any] = {"gen_ai.tool.definitions": _json(list(definitions))}
        for i, d in enumerate(list(definitions)[:MAX_MESSAGES]):
            attributes[f"llm.tools.{i}.tool.json_schema"] = _json({"type": "function", "function": dict(d)})
        return self._set(attributes)

    # ------------------------------------------------------------------------- retrieval and reranking

    def query(self, text: str) -> GenAISpan:
        """The search or rerank query (content)."""
        attributes: dict[str, Any] = {"gen_ai.retrieval.query.text": _text(text), "input.value": _text(text),
                                      "input.mime_type": "text/plain"}
        if self.operation.kind == "RERANKER":
            attributes["reranker.query"] = _text(text)
        return self._content(attributes)

    def documents(self, documents: Sequence[Document]) -> GenAISpan:
        """The documents a retriever returned, or a reranker's output, best first: ids and scores always,
        text and metadata as content."""
        if not self._on:
            return self
        reranker = self.operation.kind == "RERANKER"
        prefix = "reranker.output_documents" if reranker else "retrieval.documents"
        kept = list(documents)[:MAX_DOCUMENTS]
        attributes: dict[str, Any] = {"genai.documents.count": len(documents)}
        if not reranker:
            attributes["gen_ai.retrieval.documents"] = _json([{"id": d.id, "score": d.score} for d in kept])
        for i, d in enumerate(kept):
            attributes.update(_oi_document(f"{prefix}.{i}.document", d))
        return self._set(attributes)

    def input_documents(self, documents: Sequence[Document]) -> GenAISpan:
        """The candidates given to a reranker."""
        if not self._on:
            return self
        attributes: dict[str, Any] = {}
        for i, d in enumerate(list(documents)[:MAX_DOCUMENTS]):
            attributes.update(_oi_document(f"reranker.input_documents.{i}.document", d))
        return self._set(attributes)

    def embeddings(self, texts: Sequence[str], dimensions: int | None = None, count: int | None = None
                   ) -> GenAISpan:
        """How many inputs were embedded (``count``, default ``len(texts)``; token inputs have no texts) and
        into how many dimensions; the texts as content."""
        self._set({"gen_ai.embeddings.dimension.count": dimensions,
                   "genai.embedding.input_count": len(texts) if count is None else count})
        return self._content({f"embedding.embeddings.{i}.embedding.text": _text(t)
                              for i, t in enumerate(list(texts)[:MAX_TEXTS])})

    # --------------------------------------------------------------------------------- tools and agents

    def tool(self, name: str, *, call_id: str | None = None, description: str | None = None,
             arguments: Any = None, kind: str = "function") -> GenAISpan:
        """The tool this span executes; its arguments as content."""
        self._set({"gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id or None,
                   "gen_ai.tool.description": description or None, "gen_ai.tool.type": kind,
                   "tool.name": name, "tool.id": call_id or None, "tool.description": description or None})
        if arguments is None:
            return self
        return self._content({"gen_ai.tool.call.arguments": _text(arguments), "input.value": _text(arguments),
                              "input.mime_type": "application/json" if not isinstance(arguments, str) else None})

    def tool_result(self, result: Any) -> GenAISpan:
        """What the tool returned (content)."""
        return self._content({"gen_ai.tool.call.result": _text(result), "output.value": _text(result),
                              "output.mime_type": "text/plain" if isinstance(result, str) else "application/json"})

    def agent(self, name: str, *, id: str | None = None, description: str | None = None,  # noqa: A002
              conversation_id: str | None = None) -> GenAISpan:
        """The agent this span runs; ``conversation_id`` (a thread) is also Phoenix's ``session.id``."""
        return self._set({
            "gen_ai.agent.name": name, "gen_ai.agent.id": id or None, "gen_ai.agent.description": description,
            "agent.name": name, "gen_ai.conversation.id": conversation_id or None,
            "session.id": conversation_id or None,
        })

    def attributes(self, **values: Any) -> GenAISpan:
        """Anything else, by its full attribute name (``genai.retrieval.mode="hybrid"``): not content."""
        return self._set(values)


def _oi_message(prefix: str, message: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {f"{prefix}.role": message.get("role", "")}
    if message.get("content"):
        attributes[f"{prefix}.content"] = _text(message["content"])
    if message.get("tool_call_id"):
        attributes[f"{prefix}.tool_call_id"] = message["tool_call_id"]
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function", call)
        arguments = function.get("arguments")
        attributes[f"{prefix}.tool_calls.{j}.tool_call.id"] = call.get("id", "")
        attributes[f"{prefix}.tool_calls.{j}.tool_call.function.name"] = function.get("name", "")
        attributes[f"{prefix}.tool_calls.{j}.tool_call.function.arguments"] = _text(
            arguments if arguments is not None else {})
    return attributes


def _oi_document(prefix: str, d: Document) -> dict[str, Any]:
    attributes: dict[str, Any] = {f"{prefix}.id": d.id}
    if d.score is not None:
        attributes[f"{prefix}.score"] = float(d.score)
    if capture_content():
        if d.content is not None:
            attributes[f"{prefix}.content"] = _text(d.content)
        if d.metadata:
            attributes[f"{prefix}.metadata"] = _json(d.metadata)
    return attributes


def current(operation: Operation) -> GenAISpan:
    """Annotate the current span (in a servicer: its RPC's server span) as ``operation``."""
    return GenAISpan(trace.get_current_span(), operation)


def _named(what: str) -> str:
    service = service_name()
    return f"{service}.{what}" if service else what


@contextmanager
def start(operation: Operation, detail: str = "", *, step: str = "") -> Iterator[GenAISpan]:
    """A child span of the current one, current inside the block, named ``<service>.<step> <detail>`` where
    the step defaults to the operation (``agent.execute_tool get_weather``, ``retrieval.search kb`` with
    ``step="search"``); an exception ends it as an error and propagates."""
    name = _named(" ".join(p for p in (step or operation.operation_name or operation.kind.lower(), detail) if p))
    with _child(name) as span:
        yield GenAISpan(span, operation)


@contextmanager
def stage(pipeline: str, name: str) -> Iterator[GenAISpan]:
    """One stage of a pipeline (``stage("search", "dense")``): a child span ``<service>.<pipeline>.<name>``
    whose duration ``genai_core.metrics.StageMetrics`` records as ``genai_stage_duration_seconds``."""
    with _child(_named(f"{pipeline}.{name}"), {PIPELINE_ATTRIBUTE: pipeline, STAGE_ATTRIBUTE: name}) as span:
        yield GenAISpan(span, Operation.STEP)


@contextmanager
def _child(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    service = service_name()
    base = {"service.name": service} if service else {}
    span = tracer().start_span(name, kind=SpanKind.INTERNAL, attributes={**base, **(attributes or {})})
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span
    except (asyncio.CancelledError, GeneratorExit):
        span.add_event("cancelled")
        raise
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()
