"""The agent's ports over the other services' gRPC APIs (``genai_core.downstream``: traced channels,
deadlines, retries, failures as our own errors naming the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from genai.inference.v1 import inference_service_pb2 as inference
from genai.retrieval.v1 import retrieval_service_pb2 as retrieval
from genai.tokenizer.v1 import tokenizer_service_pb2 as tokenizer
from genai.type.v1 import error_pb2
from genai_core import errors
from genai_core.downstream import Downstream
from genai_core.errors import FailedPrecondition, GenAIError
from genai_core.structs import struct_to_dict
from google.protobuf import struct_pb2
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from genai_agent.state import jsonable
from genai_agent.types import (
    AnswerDone,
    ChatDelta,
    ChatDone,
    ChatRequest,
    Citation,
    SearchHit,
    ToolCall,
    Usage,
)

_ROLES: dict[type[BaseMessage], str] = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant",
                                        ToolMessage: "tool"}
_MODES = {"auto": inference.TOOL_CHOICE_MODE_AUTO, "none": inference.TOOL_CHOICE_MODE_NONE,
          "required": inference.TOOL_CHOICE_MODE_REQUIRED}
_FINISH = {inference.FINISH_REASON_STOP: "stop", inference.FINISH_REASON_LENGTH: "length",
           inference.FINISH_REASON_STOP_SEQUENCE: "stop", inference.FINISH_REASON_TOOL_CALLS: "tool_calls",
           inference.FINISH_REASON_CANCELLED: "cancelled", inference.FINISH_REASON_ERROR: "error"}


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(jsonable(value))
    return s


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content or [])


def _role(message: BaseMessage) -> str:
    for kind, role in _ROLES.items():
        if isinstance(message, kind):
            return role
    return message.type


def chat_message(message: BaseMessage) -> inference.ChatMessage:
    out = inference.ChatMessage(role=_role(message), content=_text(message.content))
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            out.tool_calls.append(inference.ToolCall(id=call["id"] or "", name=call["name"],
                                                     arguments=_struct(call["args"])))
    if isinstance(message, ToolMessage):
        out.tool_call_id = message.tool_call_id
        if message.name:
            out.name = message.name
    return out


# An in-band stream error's code -> the domain error of that code.
_BY_CODE = {cls.code.value: cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, GenAIError) and cls is not GenAIError}


def _failure(name: str, detail: error_pb2.ErrorDetail) -> GenAIError:
    """An in-band stream error as the domain error of its code."""
    cls = _BY_CODE.get(detail.code, FailedPrecondition)
    return cls(f"the {name} service failed: {detail.message}", reason=detail.reason or detail.code,
               resource_type="service", resource_name=name)


class InferenceChat:
    """``ports.ChatBackend`` over InferenceService.ChatStream (tools, tool choice and JSON constraints)."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    def _request(self, r: ChatRequest) -> inference.ChatStreamRequest:
        message = inference.ChatStreamRequest(
            model=r.model, messages=[chat_message(m) for m in r.messages],
            sampling=inference.SamplingParams(temperature=r.temperature, max_new_tokens=r.max_tokens),
        )
        # "none" sends no tools: the service would still parse tool-call markup that a small model copies from the
        # history's earlier calls; without tools it answers in text.
        tools = () if r.tool_choice == "none" else r.tools
        for tool in tools:
            # Strict: the service constrains the arguments to the schema while decoding; a schema that does
            # not say otherwise gets no extra keys (as OpenAI's strict mode requires), or a small model fills
            # them with the tool's description.
            parameters = {"additionalProperties": False, **tool.parameters}
            message.tools.append(inference.Tool(name=tool.name, description=tool.description,
                                                parameters=_struct(parameters), strict=True))
        if tools:
            if r.tool_choice in _MODES:
                message.tool_choice.mode = _MODES[r.tool_choice]
            else:
                message.tool_choice.function_name = r.tool_choice
        if r.json_schema is not None:
            message.constraint.json_schema.CopyFrom(_struct(r.json_schema))
        return message

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta | ChatDone]:
        async for reply in self._downstream.client("inference").ChatStream(self._request(request)):
            kind = reply.WhichOneof("event")
            if kind == "delta":
                if reply.delta.content:
                    yield ChatDelta(reply.delta.content)
            elif kind == "complete":
                c = reply.complete
                choice = c.choices[0] if c.choices else None
                # Arguments the model wrote as broken JSON arrive unparsed: the tool then reports what is missing.
                calls = tuple(ToolCall(t.id, t.name, struct_to_dict(t.arguments) if t.HasField("arguments") else {})
                              for t in (choice.tool_calls if choice else ()))
                yield ChatDone(calls, Usage(c.usage.prompt_tokens, c.usage.completion_tokens),
                               _FINISH.get(choice.finish_reason, "stop") if choice else "stop", c.model)
                return
            elif kind == "error":
                raise _failure("inference", reply.error)


def _hit(result: retrieval.SearchResult) -> SearchHit:
    chunk = result.chunk
    return SearchHit(chunk.document_id, chunk.chunk_id, chunk.text, result.score, chunk.title,
                     chunk.page_number if chunk.HasField("page_number") else None)


class RetrievalClient:
    """``ports.Retrieval`` over RetrievalService.Search and AnswerStream, tenant-scoped."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    async def search(self, tenant: str, collection: str, query: str, top_k: int) -> list[SearchHit]:
        reply = await self._downstream.client("retrieval").Search(retrieval.SearchRequest(
            tenant=tenant, collection=collection, query=query, options=retrieval.SearchOptions(top_k=top_k)))
        return [_hit(r) for r in reply.results]

    async def answer_stream(self, tenant: str, collection: str, question: str, top_k: int, model: str,
                            max_tokens: int) -> AsyncIterator[str | AnswerDone]:
        request = retrieval.AnswerStreamRequest(
            tenant=tenant, collection=collection, question=question, search=retrieval.SearchOptions(top_k=top_k),
            generation=retrieval.GenerationOptions(model=model, max_new_tokens=max_tokens))
        contexts: tuple[SearchHit, ...] = ()
        async for reply in self._downstream.client("retrieval").AnswerStream(request):
            kind = reply.WhichOneof("event")
            if kind == "contexts":
                contexts = tuple(_hit(r) for r in reply.contexts.contexts)
            elif kind == "delta":
                yield reply.delta.text
            elif kind == "complete":
                c = reply.complete
                yield AnswerDone(
                    tuple(Citation(x.document_id, x.chunk_id, x.context_index, x.quote) for x in c.citations),
                    contexts, Usage(c.usage.prompt_tokens, c.usage.completion_tokens), c.model)
                return
            elif kind == "error":
                raise _failure("retrieval", reply.error)


class TokenizerClient:
    """``ports.Tokens`` over TokenizerService.CountTokens."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    async def count(self, texts: Sequence[str], tokenizer_id: str = "") -> list[int]:
        reply = await self._downstream.client("tokenizer").CountTokens(
            tokenizer.CountTokensRequest(tokenizer=tokenizer_id, texts=list(texts)))
        return list(reply.counts)

