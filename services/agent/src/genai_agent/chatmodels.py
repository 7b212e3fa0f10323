"""Chat models as LangChain ``BaseChatModel``s, so LangGraph streams their tokens (``messages`` mode)
and nodes use one interface whatever the provider.

* ``BackendChatModel``: a ``ChatBackend`` port (the inference service over gRPC, or a scripted fake in
  tests); tools, ``tool_choice`` (auto / required / none / a tool's name) and constrained JSON pass
  through to the inference service, which constrains the tool-call JSON while decoding.
* ``ChatOpenAI`` (langchain-openai): any OpenAI-compatible endpoint, imported only when an assistant
  uses one.

``ModelFactory.build(spec)`` picks the provider from ``PROVIDERS`` (a registry).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict

from genai_agent.ports import ChatBackend
from genai_agent.types import ChatDelta, ChatRequest, ModelProvider, ModelSpec, ToolSchema

DEFAULT_MAX_TOKENS = 256


def openai_tool(schema: ToolSchema) -> dict[str, Any]:
    """A tool in the OpenAI ``tools`` shape, which every provider's ``bind_tools`` accepts."""
    return {"type": "function", "function": {"name": schema.name, "description": schema.description,
                                             "parameters": schema.parameters}}


def _schema(tool: Any) -> ToolSchema:
    function = tool["function"] if isinstance(tool, dict) and "function" in tool else tool
    return ToolSchema(function["name"], function.get("description", ""), function.get("parameters") or {})


class BackendChatModel(BaseChatModel):
    """A ``ChatBackend`` as a LangChain chat model (async only: the service never calls it blocking)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any  # ChatBackend
    model: str
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS

    @property
    def _llm_type(self) -> str:
        return "genai-inference"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
                   ) -> Runnable[Any, BaseMessage]:
        return self.bind(tools=tuple(_schema(t) for t in tools), tool_choice=tool_choice or "auto", **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("BackendChatModel is async only; use ainvoke/astream")

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        *,
        tools: tuple[ToolSchema, ...] = (),
        tool_choice: str = "auto",
        json_schema: dict[str, Any] | None = None,
        **_: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = ChatRequest(
            model=self.model, messages=tuple(messages), tools=tools, tool_choice=tool_choice if tools else "auto",
            temperature=self.temperature, max_tokens=self.max_tokens, json_schema=json_schema,
        )
        backend: ChatBackend = self.backend
        async for part in backend.chat_stream(request):
            if isinstance(part, ChatDelta):
                if part.content:
                    yield ChatGenerationChunk(message=AIMessageChunk(content=part.content))
                continue
            chunks = [{"name": c.name, "args": json.dumps(c.args), "id": c.id, "index": i, "type": "tool_call_chunk"}
                      for i, c in enumerate(part.tool_calls)]
            usage = {"input_tokens": part.usage.prompt_tokens, "output_tokens": part.usage.completion_tokens,
                     "total_tokens": part.usage.prompt_tokens + part.usage.completion_tokens}
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", tool_call_chunks=chunks, usage_metadata=usage, chunk_position="last",
                response_metadata={"finish_reason": part.finish_reason, "model_name": part.model or self.model},
            ))


def structured(model: BaseChatModel, schema: dict[str, Any], name: str = "output") -> Runnable[Any, BaseMessage]:
    """``model`` constrained to reply with JSON matching ``schema`` (an object schema)."""
    if isinstance(model, BackendChatModel):
        return model.bind(json_schema=schema)
    return model.bind(response_format={"type": "json_schema",
                                       "json_schema": {"name": name, "schema": schema, "strict": True}})


@dataclass(frozen=True)
class ModelDefaults:
    model: str  # the inference model of specs that name none
    openai_api_key: str = ""


def _inference(spec: ModelSpec, backend: ChatBackend, defaults: ModelDefaults) -> BaseChatModel:
    return BackendChatModel(
        backend=backend, model=spec.name or defaults.model,
        temperature=spec.temperature or 0.0, max_tokens=spec.max_tokens or DEFAULT_MAX_TOKENS,
    )


def _openai(spec: ModelSpec, _: ChatBackend, defaults: ModelDefaults) -> BaseChatModel:
    from langchain_openai import ChatOpenAI  # imported lazily: only assistants with a remote model need it

    return ChatOpenAI(
        model=spec.name, base_url=spec.base_url or None, api_key=defaults.openai_api_key or "unused",
        temperature=spec.temperature or 0.0, max_tokens=spec.max_tokens or DEFAULT_MAX_TOKENS,
        streaming=True, stream_usage=True,
    )


PROVIDERS: dict[ModelProvider, Callable[[ModelSpec, ChatBackend, ModelDefaults], BaseChatModel]] = {
    ModelProvider.INFERENCE: _inference,
    ModelProvider.OPENAI: _openai,
}


class ModelFactory:
    """Builds the chat model of an assistant's ``ModelSpec``."""

    def __init__(self, backend: ChatBackend, defaults: ModelDefaults) -> None:
        self._backend = backend
        self._defaults = defaults

    def build(self, spec: ModelSpec) -> BaseChatModel:
        return PROVIDERS[spec.provider](spec, self._backend, self._defaults)
