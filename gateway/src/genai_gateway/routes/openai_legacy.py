"""OpenAI's legacy function calling (``functions``, ``function_call``, role ``function``), honoured as tools.

Clients written before tools (and LangChain's older agents) send ``functions`` and read
``message.function_call`` and ``finish_reason: "function_call"``. A request that sends ``functions`` is turned
into the tools form before it is mapped to the proto, and its reply is turned back into the legacy form:

    functions=[f]                 -> tools=[{"type": "function", "function": f}]
    function_call="auto"|"none"   -> tool_choice="auto"|"none"
    function_call={"name": n}     -> tool_choice={"type": "function", "function": {"name": n}}
    assistant function_call=c     -> tool_calls=[{"id": "call_<name>", "function": c}]
    role "function", name=n       -> role "tool", tool_call_id="call_<n>"

and in the reply the first tool call becomes ``function_call`` (the legacy form has one call per message).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from genai_gateway.routes import openai_protocol as api
from genai_gateway.routes import sse


def _call_id(name: str) -> str:
    return f"call_{name}"


def _message(m: api.Message) -> api.Message:
    if m.role == "function":
        return m.model_copy(update={"role": "tool", "tool_call_id": _call_id(m.name or "")})
    if m.function_call is not None:
        call = api.MessageToolCall(id=_call_id(m.function_call.name), function=m.function_call)
        return m.model_copy(update={"function_call": None, "tool_calls": [*(m.tool_calls or []), call]})
    return m


def as_tools(body: api.ChatCompletionRequest) -> api.ChatCompletionRequest:
    """The request in the tools form (functions, function_call and legacy messages rewritten)."""
    update: dict[str, Any] = {"messages": [_message(m) for m in body.messages], "functions": None,
                              "function_call": None}
    if body.functions is not None:
        update["tools"] = [*(body.tools or []), *(api.Tool(type="function", function=f) for f in body.functions)]
    choice = body.function_call
    if isinstance(choice, str):
        update["tool_choice"] = choice
    elif choice is not None:
        update["tool_choice"] = api.NamedToolChoice(type="function", function=choice)
    return body.model_copy(update=update)


def uses_legacy(body: api.ChatCompletionRequest) -> bool:
    return body.functions is not None or body.function_call is not None


def reply(completion: api.ChatCompletion) -> api.ChatCompletion:
    """A tools-form completion in the legacy form: the first tool call as ``function_call``."""
    for choice in completion.choices:
        calls = choice.message.tool_calls
        if calls:
            fields = choice.message.model_dump(exclude_unset=True, exclude={"tool_calls"})
            choice.message = api.ResponseMessage(**fields, function_call=calls[0].function)
        if choice.finish_reason == "tool_calls":
            choice.finish_reason = "function_call"
    return completion


async def stream(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chat chunks in the legacy form: ``delta.tool_calls[0]`` pieces as ``delta.function_call``."""
    async for frame in frames:
        if not frame.startswith(b"data: {"):
            yield frame
            continue
        chunk = json.loads(frame[len(b"data: "):])
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            calls = [c for c in delta.pop("tool_calls", []) if c.get("index", 0) == 0]
            if calls:
                function = calls[0].get("function", {})
                delta["function_call"] = {k: function[k] for k in ("name", "arguments") if k in function}
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "function_call"
        yield sse.data(chunk)
