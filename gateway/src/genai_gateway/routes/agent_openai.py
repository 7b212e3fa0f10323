"""Agents behind the OpenAI API: ``/v1/chat/completions`` with ``model="agent:<assistant>"`` runs the
assistant statelessly on the given messages and returns (or streams) its final answer; ``/v1/models``
lists the assistants as ``agent:<name>``. The OpenAI routes dispatch here (``is_agent``), so any OpenAI
client can call an agent.

Sampling parameters of the request are not applied: an assistant runs with its own model settings. A
run that stops for human approval cannot be resumed through this API: it answers 409 and names the
LangGraph API to use instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from fastapi import Request
from genai.agent.v1 import agent_service_pb2 as pb

from genai_gateway.errors import GatewayError, call
from genai_gateway.routes import agent_render as render
from genai_gateway.routes import calls, sse
from genai_gateway.routes import openai_protocol as api

PREFIX = "agent:"
TENANT = "x-tenant"  # as on the native routes; assistants of other tenants are not found
_ROLES = {"system": "system", "developer": "system", "user": "human", "assistant": "ai", "tool": "tool"}


def is_agent(model: str) -> bool:
    return model.startswith(PREFIX)


def _input(body: api.ChatCompletionRequest) -> pb.StateValues:
    out = pb.StateValues()
    for m in body.messages:
        content = m.content if isinstance(m.content, str) else "".join(p.text for p in m.content or [])
        message = out.messages.add(type=_ROLES[m.role], content=content, name=m.name or "",
                                   tool_call_id=m.tool_call_id or "")
        for c in m.tool_calls or []:
            try:
                args = json.loads(c.function.arguments or "{}")
            except ValueError:
                args = {}
            call_ = message.tool_calls.add(id=c.id, name=c.function.name)
            call_.args.update(args if isinstance(args, dict) else {})
    return out


async def _open(body: api.ChatCompletionRequest, request: Request) -> Any:
    spec = pb.RunSpec(assistant_id=body.model[len(PREFIX):], input=_input(body), on_disconnect=pb.ON_DISCONNECT_CANCEL)
    stream = calls.stub(request, "agent").StreamRun(pb.StreamRunRequest(
        request_id=calls.request_id(request), tenant=request.headers.get(TENANT, ""), run=spec, stream_modes=[pb.STREAM_MODE_MESSAGES, pb.STREAM_MODE_VALUES]))
    try:
        first = await call(stream.read(), {r"^run\.input\.": "", r"^run\.assistant_id": "model"})
    except BaseException:
        stream.cancel()
        raise
    if first is grpc.aio.EOF:
        raise GatewayError(500, "the agent service ended the stream before the run started", "server_error", "internal")
    return stream


def _interrupted() -> GatewayError:
    return GatewayError(409, "the assistant stopped for human approval, which the OpenAI API cannot resume; run it "
                             "with the LangGraph API (/langgraph) on a thread instead", "conflict_error", "interrupted")


def _answer(values: pb.StateValues | None) -> tuple[str, dict[str, int]]:
    messages = list(values.messages) if values is not None else []
    ai = [m for m in messages if m.type == "ai"]
    prompt = sum(m.usage.prompt_tokens for m in ai)
    completion = sum(m.usage.completion_tokens for m in ai)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return (ai[-1].content if ai else ""), usage


async def chat_completion(body: api.ChatCompletionRequest, request: Request):
    rid, created = calls.request_id(request), int(time.time())
    stream = await _open(body, request)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        frames = _chunks(stream, rid=rid, created=created, model=body.model, include_usage=include_usage)
        return sse.EventStream(sse.events(frames, [stream], _error_frame, sse.DONE))
    values, status, error = await render.outcome(stream, call)
    if error is not None:
        raise sse.detail_error(error)
    if status == pb.RUN_STATUS_INTERRUPTED:
        raise _interrupted()
    content, usage = _answer(values)
    return api.ChatCompletion(
        id=f"chatcmpl-{rid}", object="chat.completion", created=created, model=body.model,
        choices=[api.ChatChoice(index=0, message=api.ResponseMessage(role="assistant", content=content, refusal=None),
                                finish_reason="stop", logprobs=None)],
        usage=api.Usage(**usage),
    )


def _error_frame(exc: GatewayError) -> bytes:
    return sse.data({"error": {"message": exc.message, "type": exc.type, "code": exc.code, "param": exc.param}})


async def _chunks(stream: Any, *, rid: str, created: int, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse.data({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                               "finish_reason": finish_reason}]})

    yield chunk({"role": "assistant", "content": ""})
    values = None
    while (reply := await call(stream.read())) is not grpc.aio.EOF:
        event = reply.event
        kind = event.WhichOneof("payload")
        if kind == "message" and event.message.message.chunk and event.message.message.content:
            yield chunk({"content": event.message.message.content})
        elif kind == "values":
            values = event.values
        elif kind == "error":
            raise sse.detail_error(event.error)
        elif kind == "end" and event.end.status == pb.RUN_STATUS_INTERRUPTED:
            raise _interrupted()
    yield chunk({}, "stop")
    if include_usage:
        _, usage = _answer(values)
        yield sse.data({**base, "choices": [], "usage": usage})


def _card(a: pb.Assistant) -> api.ModelCard:
    return api.ModelCard(id=f"{PREFIX}{a.name}", object="model", created=a.create_time.seconds, owned_by="agent",
                         type="agent", root=a.graph_id, parent=None)


async def model_cards(request: Request) -> list[api.ModelCard]:
    """The assistants as models (a row of routes/models.py's SOURCES, which skips a downed service)."""
    reply = await call(calls.stub(request, "agent").ListAssistants(pb.ListAssistantsRequest(
        request_id=calls.request_id(request), tenant=request.headers.get(TENANT, ""), limit=1000)))
    return [_card(a) for a in reply.assistants]


async def model_card(model: str, request: Request) -> api.ModelCard:
    reply = await call(calls.stub(request, "agent").GetAssistant(pb.GetAssistantRequest(
        request_id=calls.request_id(request), tenant=request.headers.get(TENANT, ""),
        assistant_id=model[len(PREFIX):])))
    return _card(reply.assistant)
