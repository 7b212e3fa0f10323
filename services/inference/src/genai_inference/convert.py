"""Inference protobuf <-> domain types, both directions. Nothing else in the service touches protobuf
(the servicer calls these), and no rule about values lives here: only what protobuf cannot say
(which oneof is set, enum values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genai.inference.v1 import inference_service_pb2 as pb
from genai.type.v1 import usage_pb2
from genai_core import rpc
from genai_core.errors import InvalidArgument
from genai_core.structs import struct_to_dict

from genai_inference.chat import ChatOptions, ToolCall
from genai_inference.types import (
    Constraint,
    ConstraintKind,
    DoneEvent,
    FinishEvent,
    FinishReason,
    ModelInfo,
    Sampling,
    TokenLogprob,
    ToolSpec,
)

_FINISH = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
_TOOL_MODES = {
    pb.TOOL_CHOICE_MODE_UNSPECIFIED: "auto",
    pb.TOOL_CHOICE_MODE_AUTO: "auto",
    pb.TOOL_CHOICE_MODE_NONE: "none",
    pb.TOOL_CHOICE_MODE_REQUIRED: "required",
}
_GRAMMARS = {
    pb.Grammar.SYNTAX_UNSPECIFIED: ConstraintKind.GRAMMAR_LARK,
    pb.Grammar.SYNTAX_LARK: ConstraintKind.GRAMMAR_LARK,
    pb.Grammar.SYNTAX_EBNF: ConstraintKind.GRAMMAR_EBNF,
}
_KINDS = {pb.Model.KIND_BASE: False, pb.Model.KIND_ADAPTER: True}


# -- requests -------------------------------------------------------------------------------------


def sampling_from_proto(s: pb.SamplingParams, default_max: int) -> Sampling:
    def opt(name: str, default: Any) -> Any:
        return getattr(s, name) if s.HasField(name) else default

    return Sampling(
        max_new_tokens=opt("max_new_tokens", default_max),
        min_new_tokens=opt("min_new_tokens", 0),
        temperature=opt("temperature", 1.0),
        top_k=opt("top_k", 0),
        top_p=opt("top_p", 1.0),
        min_p=opt("min_p", 0.0),
        repetition_penalty=opt("repetition_penalty", 1.0),
        presence_penalty=opt("presence_penalty", 0.0),
        frequency_penalty=opt("frequency_penalty", 0.0),
        seed=s.seed if s.HasField("seed") else None,
        stop=tuple(s.stop_sequences),
        stop_token_ids=tuple(s.stop_token_ids),
        n=opt("n", 1),
        logprobs=s.logprobs or s.HasField("top_logprobs"),
        top_logprobs=opt("top_logprobs", 0),
        prompt_logprobs=s.prompt_logprobs if s.HasField("prompt_logprobs") else (0 if s.echo else None),
        prompt_logprobs_start=opt("prompt_logprobs_start", 0),
        echo=s.echo,
        ignore_eos=s.ignore_eos,
        logit_bias=dict(s.logit_bias),
    )


def constraint_from_proto(c: pb.OutputConstraint) -> Constraint | None:
    kind = c.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "json_schema":
        return Constraint(ConstraintKind.JSON_SCHEMA, struct_to_dict(c.json_schema))
    if kind == "json_object":
        return Constraint(ConstraintKind.JSON_OBJECT, None)
    if kind == "regex":
        return Constraint(ConstraintKind.REGEX, c.regex)
    if kind == "choices":
        return Constraint(ConstraintKind.CHOICES, tuple(c.choices.choices))
    return Constraint(_GRAMMARS[c.grammar.syntax], c.grammar.text)


def prompt_from_proto(request: pb.GenerateRequest) -> tuple[str, list[int]]:
    """(text, token ids): exactly one of them is set."""
    kind = request.WhichOneof("prompt")
    if kind is None:
        raise InvalidArgument.for_field("prompt", "send the prompt as text or token_ids")
    return (request.text, []) if kind == "text" else ("", list(request.token_ids.ids))


def messages_from_proto(messages: Sequence[pb.ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI-shaped message dicts, as chat templates take them."""
    out = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.HasField("name"):
            message["name"] = m.name
        if m.HasField("tool_call_id"):
            message["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {
                    "name": c.name,
                    "arguments": struct_to_dict(c.arguments) if c.HasField("arguments") else c.unparsed_arguments}}
                for c in m.tool_calls
            ]
        out.append(message)
    return out


def chat_options_from_proto(request: pb.ChatRequest) -> ChatOptions:
    tools = tuple(ToolSpec(t.name, t.description, struct_to_dict(t.parameters)) for t in request.tools)
    choice = request.tool_choice.WhichOneof("choice")
    mode, name = "auto", ""
    if choice == "mode":
        mode = _TOOL_MODES.get(request.tool_choice.mode)
        if mode is None:
            raise InvalidArgument.for_field("tool_choice.mode", f"unknown mode {request.tool_choice.mode}")
    elif choice == "function_name":
        mode, name = "named", request.tool_choice.function_name
    # Unset means one call: small models asked for "one or more" calls tend to repeat the same call until
    # max_new_tokens. Clients that want several calls in one turn say parallel_tool_calls=true.
    parallel = request.parallel_tool_calls if request.HasField("parallel_tool_calls") else False
    kwargs = struct_to_dict(request.chat_template_kwargs) if request.HasField("chat_template_kwargs") else {}
    return ChatOptions(tools, mode, name, parallel, kwargs)


def model_kind_from_proto(kind: int) -> bool | None:
    """``is_adapter`` to filter on, or None for every model."""
    return _KINDS.get(kind)


# -- responses ------------------------------------------------------------------------------------


def logprobs_to_proto(items: Sequence[TokenLogprob]) -> list[pb.TokenLogprob]:
    return [
        pb.TokenLogprob(
            token_id=t.token_id, text=t.text, logprob=t.logprob,
            top_logprobs=[pb.TopLogprob(token_id=a.token_id, text=a.text, logprob=a.logprob) for a in t.top],
        )
        for t in items
    ]


def usage_to_proto(done: DoneEvent) -> usage_pb2.Usage:
    u = done.usage
    return rpc.usage(u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens)


def timings_to_proto(done: DoneEvent) -> usage_pb2.Timings:
    t = done.timings
    return rpc.timings(t.total_s, t.queue_s, t.time_to_first_token_s)


def finish_fields(finish: FinishEvent | None) -> dict[str, Any]:
    """The finish_reason / stop_sequence / stop_token_id fields of a completion or choice."""
    if finish is None:
        return {"finish_reason": pb.FINISH_REASON_ERROR}
    fields: dict[str, Any] = {"finish_reason": _FINISH[finish.reason]}
    if finish.stop_sequence is not None:
        fields["stop_sequence"] = finish.stop_sequence
    if finish.stop_token_id is not None:
        fields["stop_token_id"] = finish.stop_token_id
    return fields


def model_to_proto(info: ModelInfo) -> pb.Model:
    return pb.Model(
        id=info.id, kind=pb.Model.KIND_ADAPTER if info.is_adapter else pb.Model.KIND_BASE,
        base_model=info.base_model, revision=info.revision, engine=info.engine, context_length=info.context_length,
        max_input_tokens=max(0, info.context_length - 1), max_new_tokens=info.max_new_tokens, vocab_size=info.vocab_size,
        has_chat_template=info.has_chat_template, quantization=info.quantization, source=info.source,
    )


def tool_call_to_proto(call: ToolCall) -> pb.ToolCall:
    out = pb.ToolCall(id=call.id, name=call.name)
    if call.arguments is not None:
        out.arguments.update(call.arguments)
    else:
        out.unparsed_arguments = call.raw_arguments
    return out
