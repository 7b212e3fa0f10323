"""Chats: messages and tools rendered into one prompt with the model's chat template, and tool calls
split back out of the generated text.

This module owns the chat rules (and no other layer repeats them): every message has a role, every
tool a name, ``tool_choice`` "required"/named needs tools, and a named tool must be one of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genai_core.errors import InvalidArgument

from genai_inference.constraints import TOOL_CALL_BEGIN, TOOL_CALL_END, parse_tool_calls, tool_prompt
from genai_inference.types import (
    Constraint,
    ConstraintKind,
    FinishEvent,
    FinishReason,
    TokenLogprob,
    ToolCallSpec,
    ToolSpec,
)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's JSON did not parse
    raw_arguments: str = ""


@dataclass
class CompletionResult:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: FinishEvent | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class ChatOptions:
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | named
    tool_name: str = ""
    parallel_tool_calls: bool = True
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)


def _check(messages: Sequence[Mapping[str, Any]], options: ChatOptions) -> None:
    if not messages:
        raise InvalidArgument.for_field("messages", "send at least one message")
    for i, message in enumerate(messages):
        if not message.get("role"):
            raise InvalidArgument.for_field(f"messages[{i}].role", "set a role such as 'user'")
    for i, tool in enumerate(options.tools):
        if not tool.name:
            raise InvalidArgument.for_field(f"tools[{i}].name", "every tool needs a name")
    if options.tool_choice in ("required", "named") and not options.tools:
        raise InvalidArgument.for_field("tool_choice", f"tool_choice '{options.tool_choice}' needs at least one tool")
    names = sorted(t.name for t in options.tools)
    if options.tool_choice == "named" and options.tool_name not in names:
        raise InvalidArgument.for_field("tool_choice.function_name", f"'{options.tool_name}' is not one of the tools {names}")


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, Any]], options: ChatOptions
                ) -> tuple[str, Constraint | None]:
    """The prompt text, and the tool-call constraint when tools are in play."""
    _check(messages, options)
    msgs = [dict(m) for m in messages]
    constraint = None
    if options.tools and options.tool_choice != "none":
        fragment = tool_prompt(options.tools)
        if msgs[0]["role"] == "system":
            msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{fragment}".strip()
        else:
            msgs.insert(0, {"role": "system", "content": fragment})
        constraint = Constraint(
            ConstraintKind.TOOL_CALLS,
            ToolCallSpec(options.tools, options.tool_choice, options.tool_name, options.parallel_tool_calls),
        )
    for m in msgs:  # templates that know nothing of tool calls still see them as text
        if m.get("tool_calls") and not m.get("content"):
            m["content"] = "\n".join(
                f'{TOOL_CALL_BEGIN}\n{json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})}'
                f"\n{TOOL_CALL_END}"
                for c in m["tool_calls"]
            )
    try:
        text = tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=False, **dict(options.template_kwargs)
        )
    except Exception as exc:  # jinja errors carry the template's own message
        raise InvalidArgument.for_field("messages", f"the chat template could not render them: {exc}") from exc
    return text, constraint


def split_tool_calls(result: CompletionResult) -> None:
    """Move ``<tool_call>`` blocks out of the text into ``tool_calls``; finish becomes TOOL_CALLS."""
    content, calls = parse_tool_calls(result.text)
    if not calls:
        return
    opened = content.find(TOOL_CALL_BEGIN)
    if opened >= 0:  # a call cut off by max_new_tokens is neither a call nor content
        content = content[:opened].rstrip()
    unique: list[tuple[str, dict]] = []
    for call in calls:  # small models tend to repeat a call verbatim; once is what they meant
        if call not in unique:
            unique.append(call)
    result.text = content
    result.tool_calls = [ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments, json.dumps(arguments))
                         for name, arguments in unique]
    if result.finish is None or result.finish.reason not in (FinishReason.CANCELLED, FinishReason.ERROR):
        result.finish = FinishEvent(result.index, FinishReason.TOOL_CALLS)
