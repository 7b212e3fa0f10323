"""OpenAI-compatible routes: /v1/chat/completions and /v1/completions (/v1/models: routes/models.py).

Wire-exact with OpenAI's API so the official SDKs work unchanged, streaming included
(``chat.completion.chunk`` / ``text_completion`` events, ``data: [DONE]``). Finish reasons:

    STOP, STOP_SEQUENCE -> "stop"    LENGTH -> "length"    TOOL_CALLS -> "tool_calls"
    CANCELLED -> "stop"  (a client that is still reading was stopped by someone else's Cancel call:
                          it gets the text so far as a shorter answer; OpenAI has no such value and
                          its SDK types, like TGI's, accept only these)
    ERROR -> the error envelope (HTTP 500 "generation_failed", or an error event once a stream has started)

Requests carry the middleware's request id as the gRPC request_id (several prompts of one
/v1/completions request: "<id>-<i>"); responses are "chatcmpl-<id>" / "cmpl-<id>".
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from genai.inference.v1 import inference_service_pb2 as pb
from genai_core.structs import struct_to_dict
from genai_core.telemetry import current_trace_id
from google.protobuf import struct_pb2

from genai_gateway.errors import GatewayError, call, invalid_argument
from genai_gateway.openapi import stream_response
from genai_gateway.routes import agent_openai, calls, openai_legacy, sse
from genai_gateway.routes import openai_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["openai"], route_class=ApiRoute)

_FINISH = {
    pb.FINISH_REASON_UNSPECIFIED: "stop",
    pb.FINISH_REASON_STOP: "stop",
    pb.FINISH_REASON_STOP_SEQUENCE: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_TOOL_CALLS: "tool_calls",
    pb.FINISH_REASON_CANCELLED: "stop",
}
_TOOL_MODES = {
    "auto": pb.TOOL_CHOICE_MODE_AUTO,
    "none": pb.TOOL_CHOICE_MODE_NONE,
    "required": pb.TOOL_CHOICE_MODE_REQUIRED,
}

# The service names proto fields in its BadRequest violations; clients know the OpenAI names.
_SAMPLING_RENAMES = {
    r"^sampling\.min_new_tokens": "min_tokens",
    r"^sampling\.stop_sequences": "stop",
    r"^sampling\.(\w+)": r"\1",
}
_CHAT_RENAMES = {
    r"^messages\[(\d+)\]\.tool_calls\[(\d+)\]\.(name|arguments|unparsed_arguments)": r"messages[\1].tool_calls[\2].function.\3",
    r"^tools\[(\d+)\]\.(name|description|parameters|strict)": r"tools[\1].function.\2",
    r"^tool_choice\.function_name": "tool_choice.function.name",
    r"^constraint.*": "response_format",
    r"^chat_template_kwargs.*": "chat_template_kwargs",
    **_SAMPLING_RENAMES,
}


async def model_name(request: Request, requested: str) -> str:
    """The model a stream's chunks name: the request's, or (empty) the inference service's default, looked up
    once per gateway; a stream cannot wait for its final message to say which model ran."""
    if requested:
        return requested
    state = request.app.state
    if not getattr(state, "default_model", ""):
        reply = await call(calls.stub(request, "inference").GetInfo(pb.GetInfoRequest(
            request_id=calls.request_id(request)), timeout=calls.deadlines(request).lookup()))
        state.default_model = reply.default_model.id
    return state.default_model


def canceller(request: Request, request_ids: Sequence[str]):
    """Sends Cancel for each request id: what frees the service's slots when a client leaves a unary call."""
    stub = calls.stub(request, "inference")

    async def cancel() -> None:
        await asyncio.gather(
            *(
                stub.Cancel(pb.CancelRequest(request_id=f"{rid}-cancel", target_request_id=rid), timeout=5)
                for rid in request_ids
            )
        )

    return cancel


def _struct(value: dict[str, Any], param: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    try:
        out.update(value)
    except (TypeError, ValueError) as exc:
        raise invalid_argument(param, str(exc)) from exc
    return out


def _error_frame(exc: GatewayError) -> bytes:
    error = {
        "message": exc.message,
        "type": exc.type,
        "code": exc.code,
        "param": exc.param,
        "trace_id": current_trace_id(),
    }
    return sse.data({"error": error})


def _usage(usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def _finish(reason: int) -> str:
    if reason == pb.FINISH_REASON_ERROR:
        raise GatewayError(500, "the generation failed on the inference service", "server_error", "generation_failed")
    return _FINISH[reason]


# -- request mapping ----------------------------------------------------------------------------


def _sampling(body: api._Sampling, max_tokens: int | None) -> pb.SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    out = pb.SamplingParams(
        n=body.n, stop_sequences=stop, stop_token_ids=body.stop_token_ids, ignore_eos=body.ignore_eos
    )
    if max_tokens is not None:
        out.max_new_tokens = max_tokens
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p", "repetition_penalty"):
        if getattr(body, name) is not None:
            setattr(out, name, getattr(body, name))
    if body.top_k is not None:
        out.top_k = max(body.top_k, 0)  # vLLM spells "disabled" -1, the proto 0
    if body.min_tokens is not None:
        out.min_new_tokens = body.min_tokens
    if body.seed is not None:
        out.seed = body.seed % 2**64  # OpenAI seeds are signed; any fixed mapping keeps them reproducible
    for token, bias in (body.logit_bias or {}).items():
        if not (token.isascii() and token.isdigit()) or int(token) >= 2**32:  # "4²".isdigit() is True
            raise invalid_argument("logit_bias", f"keys are token ids, got {token!r}")
        out.logit_bias[int(token)] = bias
    return out


def _content(i: int, m: api.Message) -> str:
    if m.content is None:
        if m.role == "assistant" and m.tool_calls:
            return ""
        raise invalid_argument(f"messages[{i}].content", f"a {m.role} message needs content")
    # Parts are joined without a separator, as /v1/chat/template does, so token counts agree.
    return m.content if isinstance(m.content, str) else "".join(p.text for p in m.content)


def _message(i: int, m: api.Message) -> pb.ChatMessage:
    out = pb.ChatMessage(role=m.role, content=_content(i, m))
    if m.name is not None:
        out.name = m.name
    if m.role == "tool":
        if not m.tool_call_id:
            raise invalid_argument(f"messages[{i}].tool_call_id", "a tool message must name the tool call it answers")
        out.tool_call_id = m.tool_call_id
    for j, c in enumerate(m.tool_calls or []):
        tool_call = pb.ToolCall(id=c.id, name=c.function.name)
        try:
            arguments = json.loads(c.function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if isinstance(arguments, dict):
            tool_call.arguments.CopyFrom(_struct(arguments, f"messages[{i}].tool_calls[{j}].function.arguments"))
        else:
            # A model may have written broken arguments; the history must still go back to it as they were.
            tool_call.unparsed_arguments = c.function.arguments
        out.tool_calls.append(tool_call)
    return out


def _tools(body: api.ChatCompletionRequest, message: pb.ChatRequest) -> None:
    names = []
    for i, t in enumerate(body.tools or []):
        f = t.function
        message.tools.append(
            pb.Tool(
                name=f.name,
                description=f.description,
                parameters=_struct(f.parameters, f"tools[{i}].function.parameters"),
                strict=bool(f.strict),
            )
        )
        names.append(f.name)
    # Whether tool_choice fits the tools ("required" needs one, a named tool must be listed) is the
    # inference service's rule (genai_inference.chat); its violations come back renamed to these params.
    choice = body.tool_choice
    if choice is None:
        return
    if isinstance(choice, str):
        message.tool_choice.mode = _TOOL_MODES[choice]
        return
    message.tool_choice.function_name = choice.function.name


def _constraint(
    body: api.ChatCompletionRequest | api.CompletionRequest, message: pb.ChatRequest | pb.GenerateRequest
) -> None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return
    if fmt.type == "json_schema" and fmt.json_schema is None:
        raise invalid_argument("response_format.json_schema", "type json_schema needs a json_schema object")
    if fmt.type == "json_object" or not fmt.json_schema.schema_:
        message.constraint.json_object.SetInParent()
    else:
        message.constraint.json_schema.CopyFrom(_struct(fmt.json_schema.schema_, "response_format.json_schema.schema"))


def chat_request(body: api.ChatCompletionRequest, rid: str) -> tuple[pb.ChatRequest, dict[str, str]]:
    if body.top_logprobs is not None and not body.logprobs:
        raise invalid_argument("top_logprobs", "set logprobs to true to use top_logprobs")
    if body.stream_options is not None and not body.stream:
        raise invalid_argument("stream_options", "only allowed when stream is true")
    max_param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    sampling = _sampling(
        body, body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    )
    sampling.logprobs = body.logprobs
    if body.top_logprobs is not None:
        sampling.top_logprobs = body.top_logprobs
    message = pb.ChatRequest(
        request_id=rid,
        model=body.model,
        messages=[_message(i, m) for i, m in enumerate(body.messages)],
        sampling=sampling,
    )
    _tools(body, message)
    _constraint(body, message)
    if body.parallel_tool_calls is not None:
        message.parallel_tool_calls = body.parallel_tool_calls
    if body.chat_template_kwargs:
        message.chat_template_kwargs.CopyFrom(_struct(body.chat_template_kwargs, "chat_template_kwargs"))
    return message, {r"^sampling\.max_new_tokens": max_param, **_CHAT_RENAMES}


# -- chat responses -----------------------------------------------------------------------------


def _token_logprobs(items: Sequence[pb.TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.text,
            "logprob": sse.logprob(t.logprob),
            "bytes": list(t.text.encode()),
            "top_logprobs": [
                {"token": a.text, "logprob": sse.logprob(a.logprob), "bytes": list(a.text.encode())}
                for a in t.top_logprobs
            ],
        }
        for t in items
    ]


def tool_arguments(tool_call: pb.ToolCall) -> str:
    if tool_call.HasField("arguments"):
        return json.dumps(struct_to_dict(tool_call.arguments), ensure_ascii=False)
    return tool_call.unparsed_arguments


def _tool_call_json(tool_call: pb.ToolCall) -> dict[str, Any]:
    return {
        "id": tool_call.id or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": tool_call.name, "arguments": tool_arguments(tool_call)},
    }


def _chat_choice(c: pb.ChatChoice, logprobs: bool) -> api.ChatChoice:
    calls = [_tool_call_json(t) for t in c.message.tool_calls]
    message = api.ResponseMessage(
        role="assistant", content=c.message.content if c.message.content or not calls else None, refusal=None
    )
    if calls:
        message.tool_calls = [api.ResponseToolCall(**t) for t in calls]
    if c.message.reasoning_content:
        message.reasoning_content = c.message.reasoning_content
    return api.ChatChoice(
        index=c.index,
        message=message,
        logprobs={"content": _token_logprobs(c.logprobs), "refusal": None} if logprobs else None,
        finish_reason=_finish(c.finish_reason),
    )


async def _chat_chunks(
    stream: sse.GrpcStream, *, rid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(index: int, delta: dict[str, Any], logprobs: Any = None, finish_reason: str | None = None) -> bytes:
        out = {
            **base,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
        }
        if include_usage:
            out["usage"] = None  # OpenAI sends null on every chunk but the last
        return sse.data(out)

    started: set[int] = set()
    calls_seen: set[tuple[int, int]] = set()
    async for message in stream:
        if message.WhichOneof("event") == "delta":
            d = message.delta
            if d.index not in started:
                started.add(d.index)
                yield chunk(d.index, {"role": "assistant", "content": ""})
            delta: dict[str, Any] = {}
            if d.content:
                delta["content"] = d.content
            if d.reasoning_content:
                delta["reasoning_content"] = d.reasoning_content
            if d.tool_calls:
                delta["tool_calls"] = []
                for t in d.tool_calls:
                    if (d.index, t.index) in calls_seen:
                        delta["tool_calls"].append({"index": t.index, "function": {"arguments": t.arguments_delta}})
                        continue
                    calls_seen.add((d.index, t.index))
                    delta["tool_calls"].append(
                        {
                            "index": t.index,
                            "id": t.id or f"call_{uuid.uuid4().hex[:24]}",
                            "type": "function",
                            "function": {"name": t.name, "arguments": t.arguments_delta},
                        }
                    )
            logprobs = {"content": _token_logprobs(d.logprobs), "refusal": None} if d.logprobs else None
            if delta or logprobs:
                yield chunk(d.index, delta, logprobs)
            continue
        complete = message.complete
        for f in complete.choices:
            if f.index not in started:
                started.add(f.index)
                yield chunk(f.index, {"role": "assistant", "content": ""})
            # Tool calls the service only parsed at the end arrive whole here, never as deltas.
            unsent = [(i, t) for i, t in enumerate(f.tool_calls) if (f.index, i) not in calls_seen]
            if unsent:
                yield chunk(f.index, {"tool_calls": [{"index": i, **_tool_call_json(t)} for i, t in unsent]})
            yield chunk(f.index, {}, None, _finish(f.finish_reason))
        if include_usage:
            yield sse.data({**base, "choices": [], "usage": _usage(complete.usage)})


@router.post(
    "/v1/chat/completions",
    response_model=api.ChatCompletion,
    response_model_exclude_unset=True,
    summary="Chat completion (OpenAI-compatible; SSE when stream is true)",
    responses=stream_response("A chat.completion, or chat.completion.chunk events when stream is true"),
)
async def chat_completions(body: api.ChatCompletionRequest, request: Request):
    if agent_openai.is_agent(body.model):  # model="agent:<assistant>": the agent service answers
        return await agent_openai.chat_completion(body, request)
    rid, created = calls.request_id(request), int(time.time())
    legacy = openai_legacy.uses_legacy(body)
    if legacy:
        body = openai_legacy.as_tools(body)
    message, renames = chat_request(body, rid)
    stub = calls.stub(request, "inference")
    timeout = calls.deadlines(request).generate()
    if body.stream:
        streaming = pb.ChatStreamRequest.FromString(message.SerializeToString())  # same fields and numbers
        streams = await sse.open_streams([lambda: stub.ChatStream(streaming, timeout=timeout)], [renames])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        model = await model_name(request, body.model)
        frames = _chat_chunks(streams[0], rid=rid, created=created, model=model, include_usage=include_usage)
        if legacy:
            frames = openai_legacy.stream(frames)
        return sse.EventStream(sse.events(frames, streams, _error_frame, sse.DONE))
    reply = await calls.unary(request, stub.Chat(message, timeout=timeout), renames, canceller(request, [rid]))
    completion = api.ChatCompletion(
        id=f"chatcmpl-{rid}",
        object="chat.completion",
        created=created,
        model=reply.model or body.model,
        choices=[_chat_choice(c, body.logprobs) for c in reply.choices],
        usage=api.Usage(**_usage(reply.usage)),
    )
    return openai_legacy.reply(completion) if legacy else completion


# -- completions (legacy) -----------------------------------------------------------------------


def _top(t: pb.TokenLogprob) -> dict[str, float]:
    # The legacy format always includes the chosen token, so a dict may hold logprobs + 1 entries.
    top = {a.text: sse.logprob(a.logprob) for a in t.top_logprobs}
    top.setdefault(t.text, sse.logprob(t.logprob))
    return top


def _legacy_logprobs(items: Sequence[pb.TokenLogprob], offset: int = 0, prompt: Sequence[pb.TokenLogprob] = ()) -> dict:
    """{tokens, token_logprobs, top_logprobs, text_offset}; a prompt's first token has no logprob (null)."""
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for i, t in enumerate([*prompt, *items]):
        unscored = bool(prompt) and i == 0
        out["tokens"].append(t.text)
        out["token_logprobs"].append(None if unscored else sse.logprob(t.logprob))
        out["top_logprobs"].append(None if unscored else _top(t))
        out["text_offset"].append(offset)
        offset += len(t.text)
    return out


def _prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"text": prompt}]
    if isinstance(prompt[0], str):  # lists are never empty: the schema says min_length 1
        return [{"text": p} for p in prompt]
    sequences = [prompt] if isinstance(prompt[0], int) else prompt  # ids are uint32: the schema bounds them
    return [{"token_ids": pb.TokenIds(ids=ids)} for ids in sequences]


def _generate_requests(body: api.CompletionRequest, rid: str) -> tuple[list[pb.GenerateRequest], list[dict[str, str]]]:
    if body.stream_options is not None and not body.stream:
        raise invalid_argument("stream_options", "only allowed when stream is true")
    if body.echo and body.stream:
        raise invalid_argument("echo", "echo is not supported with stream; send stream=false")
    sampling = _sampling(body, body.max_tokens)
    if body.logprobs is not None:
        sampling.logprobs = True
        sampling.top_logprobs = body.logprobs
        if body.echo:
            sampling.prompt_logprobs = body.logprobs
    sampling.echo = body.echo
    prompts = _prompts(body.prompt)
    messages, renames = [], []
    for i, prompt in enumerate(prompts):
        name = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
        message = pb.GenerateRequest(
            request_id=rid if len(prompts) == 1 else f"{rid}-{i}", model=body.model, sampling=sampling, **prompt
        )
        _constraint(body, message)
        messages.append(message)
        renames.append(
            {
                r"^(text|token_ids|prompt)": name,
                r"^sampling\.max_new_tokens": "max_tokens",
                r"^sampling\.(top_logprobs|prompt_logprobs|logprobs)": "logprobs",
                **_SAMPLING_RENAMES,
            }
        )
    return messages, renames


async def _completion_chunks(
    streams: Sequence[sse.GrpcStream],
    *,
    rid: str,
    created: int,
    model: str,
    n: int,
    logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    base = {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": model}

    def chunk(index: int, text: str, lp: Any = None, finish_reason: str | None = None) -> bytes:
        out = {**base, "choices": [{"index": index, "text": text, "logprobs": lp, "finish_reason": finish_reason}]}
        if include_usage:
            out["usage"] = None
        return sse.data(out)

    totals = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    # Prompts run concurrently on the service (every stream is open); their events go out one prompt after another.
    for p, stream in enumerate(streams):
        offsets: dict[int, int] = {}
        async for message in stream:
            if message.WhichOneof("event") == "delta":
                d = message.delta
                index = p * n + d.index
                lp = None
                if logprobs:
                    lp = _legacy_logprobs(d.logprobs, offsets.get(index, 0))
                offsets[index] = offsets.get(index, 0) + len(d.text)
                if d.text or lp:
                    yield chunk(index, d.text, lp)
                continue
            complete = message.complete
            for f in complete.choices:
                yield chunk(p * n + f.index, "", None, _finish(f.finish_reason))
            for key, value in _usage(complete.usage).items():
                if key == "prompt_tokens_details":
                    totals[key]["cached_tokens"] += value["cached_tokens"]
                else:
                    totals[key] += value
    if include_usage:
        yield sse.data({**base, "choices": [], "usage": totals})


@router.post(
    "/v1/completions",
    response_model=api.Completion,
    response_model_exclude_unset=True,
    summary="Text completion (OpenAI legacy; echo + logprobs for loglikelihood evaluation)",
    responses=stream_response("A text_completion, or text_completion events when stream is true"),
)
async def completions(body: api.CompletionRequest, request: Request):
    rid, created = calls.request_id(request), int(time.time())
    messages, renames = _generate_requests(body, rid)
    stub = calls.stub(request, "inference")
    timeout = calls.deadlines(request).generate()
    if body.stream:
        streaming = [pb.GenerateStreamRequest.FromString(m.SerializeToString()) for m in messages]
        streams = await sse.open_streams([lambda m=m: stub.GenerateStream(m, timeout=timeout) for m in streaming],
                                         renames)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        frames = _completion_chunks(
            streams,
            rid=rid,
            created=created,
            model=await model_name(request, body.model),
            n=body.n,
            logprobs=body.logprobs is not None,
            include_usage=include_usage,
        )
        return sse.EventStream(sse.events(frames, streams, _error_frame, sse.DONE))
    replies = await calls.unary_all(
        request, [stub.Generate(m, timeout=timeout) for m in messages], renames,
        canceller(request, [m.request_id for m in messages]),
    )
    choices, usage = (
        [],
        api.Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0, prompt_tokens_details={"cached_tokens": 0}),
    )
    for p, reply in enumerate(replies):
        for c in reply.completions:
            lp = None
            if body.logprobs is not None:
                lp = api.CompletionLogprobs(
                    **_legacy_logprobs(c.logprobs, prompt=reply.prompt_logprobs if body.echo else ())
                )
            choices.append(
                api.CompletionChoice(
                    index=p * body.n + c.index, text=c.text, logprobs=lp, finish_reason=_finish(c.finish_reason)
                )
            )
        for key, value in _usage(reply.usage).items():
            if key == "prompt_tokens_details":
                usage.prompt_tokens_details["cached_tokens"] += value["cached_tokens"]
            else:
                setattr(usage, key, getattr(usage, key) + value)
    return api.Completion(
        id=f"cmpl-{rid}",
        object="text_completion",
        created=created,
        model=replies[0].model or body.model,
        choices=sorted(choices, key=lambda c: c.index),
        usage=usage,
    )
