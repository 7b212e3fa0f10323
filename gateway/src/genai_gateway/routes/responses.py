"""OpenAI's Responses API, what the current ``openai`` SDK's ``client.responses`` and LangChain's
``ChatOpenAI(use_responses_api=True)`` call: ``POST /v1/responses`` (JSON, or SSE events when streaming),
``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

A response is a chat completion underneath: the input items (and, with ``previous_response_id``, the stored
conversation before them, with ``instructions`` first as a system message) become chat messages, ``tools``,
``tool_choice`` and ``text.format`` become their chat forms, and the request goes through the same mapping
as ``/v1/chat/completions`` (routes/openai.py) to the inference service. The reply becomes output items: one
``message`` with the text, then one ``function_call`` per tool call. Streams send OpenAI's events in order
(``response.created``, ``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``..., the matching ``.done`` events, function-call argument deltas, then
``response.completed``, ``response.incomplete`` (the token limit) or ``response.failed``), each with its
``sequence_number``, as ``event:``/``data:`` pairs. Stored responses: routes/response_store.py.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from genai.inference.v1 import inference_service_pb2 as pb
from pydantic import ValidationError

from genai_gateway.errors import GatewayError
from genai_gateway.openapi import stream_response
from genai_gateway.routes import calls, openai, sse
from genai_gateway.routes import openai_protocol as chat
from genai_gateway.routes import responses_protocol as api
from genai_gateway.routes.response_store import ResponseStore, StoredResponse
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["openai"], route_class=ApiRoute)

# Chat field paths (in errors) -> the Responses field the client sent.
_PARAMS = [
    (r"^max_completion_tokens", "max_output_tokens"),
    (r"^tools\[(\d+)\]\.function\.", r"tools[\1]."),
    (r"^tool_choice\.function\.", "tool_choice."),
    (r"^response_format.*", "text.format"),
    (r"^messages.*", "input"),
]


def store(request: Request) -> ResponseStore:
    state = request.app.state
    if not hasattr(state, "responses"):
        state.responses = ResponseStore(state.settings.responses_kept)
    return state.responses


def _renamed(exc: GatewayError) -> GatewayError:
    if not exc.param:
        return exc
    param = exc.param
    for pattern, replacement in _PARAMS:
        param, count = re.subn(pattern, replacement, param, count=1)
        if count:
            break
    message = exc.message.replace(exc.param, param, 1)
    return GatewayError(exc.status, message, exc.type, exc.code, param)


def _bad(param: str, message: str, status: int = 400) -> GatewayError:
    type_ = "not_found_error" if status == 404 else "invalid_request_error"
    return GatewayError(status, f"{param}: {message}", type_, "not_found" if status == 404 else "invalid_argument",
                        param)


# -- request: input items -> chat messages ---------------------------------------------------------


def _text(content: str | list) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.refusal if p.type == "refusal" else p.text for p in content)


def _messages(items: str | list) -> list[chat.Message]:
    """Input items as chat messages; consecutive function calls join the assistant message before them."""
    if isinstance(items, str):
        return [chat.Message(role="user", content=items)]
    out: list[chat.Message] = []
    for item in items:
        if item.type == "message":
            out.append(chat.Message(role=item.role, content=_text(item.content)))
        elif item.type == "function_call":
            call = chat.MessageToolCall(id=item.call_id, function=chat.MessageFunctionCall(name=item.name,
                                                                                          arguments=item.arguments))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = last.model_copy(update={"tool_calls": [*(last.tool_calls or []), call]})
            else:
                out.append(chat.Message(role="assistant", content=None, tool_calls=[call]))
        else:  # function_call_output
            out.append(chat.Message(role="tool", tool_call_id=item.call_id, content=_text(item.output)))
    return out


def _response_format(text: api.TextConfig | None) -> dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema_,
                                                  "description": fmt.description, "strict": fmt.strict}}


def _chat_body(body: api.ResponseCreate, history: list[chat.Message]) -> chat.ChatCompletionRequest:
    instructions = [chat.Message(role="system", content=body.instructions)] if body.instructions else []
    tool_choice: Any = body.tool_choice
    if isinstance(tool_choice, api.NamedFunction):
        tool_choice = {"type": "function", "function": {"name": tool_choice.name}}
    values: dict[str, Any] = {
        "model": body.model,
        "messages": [*instructions, *history, *_messages(body.input)],
        "stream": body.stream,
        "tools": [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                    "parameters": t.parameters or {}, "strict": t.strict}}
                  for t in body.tools or []] or None,
        "tool_choice": tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": _response_format(body.text),
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
    }
    try:
        return chat.ChatCompletionRequest.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:  # a rule of chat the Responses schema does not state
        first = exc.errors()[0]
        raise _bad("input", str(first["msg"])) from None


# -- reply: chat -> output items and the response object ------------------------------------------


@dataclass
class _Output:
    """The response being built: text, function calls, how it ended."""

    text: str = ""
    message_id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    calls: list[dict[str, Any]] = field(default_factory=list)  # output items of type function_call
    status: str = "completed"
    usage: dict[str, Any] | None = None
    model: str = ""
    error: dict[str, str] | None = None

    def items(self, status: str = "completed") -> list[dict[str, Any]]:
        items = []
        if self.text or not self.calls:
            items.append({"id": self.message_id, "type": "message", "role": "assistant", "status": status,
                          "content": [_text_part(self.text)]})
        return [*items, *self.calls]

    def add_call(self, call_id: str, name: str, arguments: str) -> dict[str, Any]:
        item = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "completed",
                "call_id": call_id or f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": arguments}
        self.calls.append(item)
        return item

    def finish(self, reason: int, usage) -> None:
        if reason == pb.FINISH_REASON_ERROR:
            self.status = "failed"
            self.error = {"code": "server_error", "message": "the generation failed on the inference service"}
        elif reason == pb.FINISH_REASON_LENGTH:
            self.status = "incomplete"
        self.usage = {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclass(frozen=True)
class _Request:
    id: str
    created_at: int
    body: api.ResponseCreate
    model: str

    def response(self, output: _Output | None, status: str) -> dict[str, Any]:
        body = self.body
        fmt = body.text.format.model_dump(by_alias=True) if body.text and body.text.format else {"type": "text"}
        tool_choice: Any = body.tool_choice or "auto"
        if isinstance(tool_choice, api.NamedFunction):
            tool_choice = tool_choice.model_dump()
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": (output.model if output and output.model else self.model),
            "output": output.items() if output else [],
            "instructions": body.instructions,
            "previous_response_id": body.previous_response_id,
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "tool_choice": tool_choice,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "text": {"format": fmt},
            "temperature": body.temperature,
            "top_p": body.top_p,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "store": body.store,
            "background": False,
            "truncation": "disabled",
            "usage": output.usage if output else None,
            "error": output.error if output else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        }


def _input_items(body: api.ResponseCreate) -> list[dict[str, Any]]:
    if isinstance(body.input, str):
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": body.input}]}]
    else:
        items = [item.model_dump(exclude_none=True) for item in body.input]
    for item in items:
        item.setdefault("id", f"{'msg' if item['type'] == 'message' else 'fc'}_{uuid.uuid4().hex}")
    return items


def _answer(output: _Output) -> chat.Message:
    """The output as the assistant message a continuation sends back."""
    calls = [chat.MessageToolCall(id=c["call_id"], function=chat.MessageFunctionCall(name=c["name"],
                                                                                    arguments=c["arguments"]))
             for c in output.calls]
    return chat.Message(role="assistant", content=output.text or None, tool_calls=calls or None)


def _keep(request: Request, req: _Request, chat_body: chat.ChatCompletionRequest, output: _Output,
          response: dict[str, Any]) -> None:
    if not req.body.store or output.status == "failed":
        return
    # The conversation a continuation sends: never this response's instructions (OpenAI does not carry them).
    messages = chat_body.messages[1:] if req.body.instructions else chat_body.messages
    store(request).put(StoredResponse(response, _input_items(req.body), [*messages, _answer(output)]))


# -- the routes -----------------------------------------------------------------------------------


@router.post("/v1/responses", response_model=api.ResponseObject, summary="Create a model response (Responses API)",
             responses=stream_response("The response, or its events (response.created ... response.completed)"))
async def create_response(body: api.ResponseCreate, request: Request):
    history: list[chat.Message] = []
    if body.previous_response_id:
        previous = store(request).get(body.previous_response_id)
        if previous is None:
            raise _bad("previous_response_id", f"no stored response {body.previous_response_id!r} (it was created "
                       "with store false, deleted, or this gateway restarted since)", 404)
        history = previous.conversation
    chat_body = _chat_body(body, history)
    rid = calls.request_id(request)
    try:
        message, renames = openai.chat_request(chat_body, rid)
    except GatewayError as exc:
        raise _renamed(exc) from None
    req = _Request(f"resp_{uuid.uuid4().hex}", int(time.time()), body, body.model)
    stub = calls.stub(request, "inference")
    timeout = calls.deadlines(request).generate()
    if body.stream:
        streaming = pb.ChatStreamRequest.FromString(message.SerializeToString())
        try:
            streams = await sse.open_streams([lambda: stub.ChatStream(streaming, timeout=timeout)], [renames])
        except GatewayError as exc:
            raise _renamed(exc) from None
        req = _Request(req.id, req.created_at, body, await openai.model_name(request, body.model))
        events = _Events()
        frames = _stream(request, streams[0], req, chat_body, events)
        return sse.EventStream(sse.events(frames, streams, events.failure(req)))
    try:
        reply = await calls.unary(request, stub.Chat(message, timeout=timeout), renames,
                                  openai.canceller(request, [rid]))
    except GatewayError as exc:
        raise _renamed(exc) from None
    choice = reply.choices[0]
    output = _Output(text=choice.message.content, model=reply.model)
    for call in choice.message.tool_calls:
        output.add_call(call.id, call.name, openai.tool_arguments(call))
    output.finish(choice.finish_reason, reply.usage)
    if output.status == "failed":
        raise GatewayError(500, output.error["message"], "server_error", "generation_failed")
    response = req.response(output, output.status)
    _keep(request, req, chat_body, output, response)
    return response


class _Events:
    """Numbers the events of one stream (``sequence_number``) and frames them as ``event:``/``data:``."""

    def __init__(self) -> None:
        self._numbers = itertools.count()

    def frame(self, payload: dict[str, Any]) -> bytes:
        payload = {"type": payload["type"], "sequence_number": next(self._numbers), **payload}
        return f"event: {payload['type']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    def failure(self, req: _Request):
        def frame(exc: GatewayError) -> bytes:
            output = _Output(status="failed", error={"code": exc.code, "message": exc.message})
            response = req.response(output, "failed")
            response["output"] = []
            return self.frame({"type": "response.failed", "response": response})

        return frame


async def _stream(request: Request, stream: sse.GrpcStream, req: _Request, chat_body: chat.ChatCompletionRequest,
                  events: _Events) -> AsyncIterator[bytes]:
    output = _Output(model=req.model)
    yield events.frame({"type": "response.created", "response": req.response(None, "in_progress")})
    yield events.frame({"type": "response.in_progress", "response": req.response(None, "in_progress")})
    text_open = False
    calls: dict[int, dict[str, Any]] = {}  # tool-call index -> its output item, while its arguments stream
    positions: dict[str, int] = {}  # item id -> output_index

    def start_text():
        positions[output.message_id] = len(positions)
        item = {"id": output.message_id, "type": "message", "role": "assistant", "status": "in_progress",
                "content": []}
        yield events.frame({"type": "response.output_item.added", "output_index": positions[output.message_id],
                            "item": item})
        yield events.frame({"type": "response.content_part.added", "item_id": output.message_id,
                            "output_index": positions[output.message_id], "content_index": 0,
                            "part": _text_part("")})

    def close_text():
        index = positions[output.message_id]
        base = {"item_id": output.message_id, "output_index": index, "content_index": 0}
        yield events.frame({"type": "response.output_text.done", **base, "text": output.text, "logprobs": []})
        yield events.frame({"type": "response.content_part.done", **base, "part": _text_part(output.text)})
        yield events.frame({"type": "response.output_item.done", "output_index": index,
                            "item": output.items()[0]})

    def start_call(item: dict[str, Any]):
        positions[item["id"]] = len(positions)
        yield events.frame({"type": "response.output_item.added", "output_index": positions[item["id"]],
                            "item": {**item, "status": "in_progress", "arguments": ""}})

    def argument_delta(item: dict[str, Any], delta: str):
        yield events.frame({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                            "output_index": positions[item["id"]], "delta": delta})

    def close_call(item: dict[str, Any]):
        index = positions[item["id"]]
        yield events.frame({"type": "response.function_call_arguments.done", "item_id": item["id"],
                            "output_index": index, "arguments": item["arguments"]})
        yield events.frame({"type": "response.output_item.done", "output_index": index, "item": item})

    async for message in stream:
        if message.WhichOneof("event") == "delta":
            d = message.delta
            if d.content:
                if not text_open and not calls:
                    text_open = True
                    for frame in start_text():
                        yield frame
                if text_open:
                    output.text += d.content
                    yield events.frame({"type": "response.output_text.delta", "item_id": output.message_id,
                                        "output_index": positions[output.message_id], "content_index": 0,
                                        "delta": d.content, "logprobs": []})
            for t in d.tool_calls:
                if text_open:  # items are sent one after the other: the text ends where the calls begin
                    for frame in close_text():
                        yield frame
                    text_open = False
                if t.index not in calls:
                    calls[t.index] = output.add_call(t.id, t.name, "")
                    for frame in start_call(calls[t.index]):
                        yield frame
                calls[t.index]["arguments"] += t.arguments_delta
                if t.arguments_delta:
                    for frame in argument_delta(calls[t.index], t.arguments_delta):
                        yield frame
            continue
        complete = message.complete
        finish = complete.choices[0] if complete.choices else pb.ChoiceFinish()
        if text_open:
            for frame in close_text():
                yield frame
        for i, t in enumerate(finish.tool_calls):
            if i in calls:  # streamed: the final form of its arguments
                calls[i]["arguments"] = openai.tool_arguments(t) or calls[i]["arguments"]
                continue
            calls[i] = output.add_call(t.id, t.name, openai.tool_arguments(t))
            for frame in start_call(calls[i]):
                yield frame
            for frame in argument_delta(calls[i], calls[i]["arguments"]):
                yield frame
        for i in sorted(calls):
            for frame in close_call(calls[i]):
                yield frame
        if not positions:  # nothing was generated: one empty message, as OpenAI sends
            for frame in [*start_text(), *close_text()]:
                yield frame
        output.model = complete.model or output.model
        output.finish(finish.finish_reason, complete.usage)
        response = req.response(output, output.status)
        if output.status == "failed":
            yield events.frame({"type": "response.failed", "response": response})
            return
        _keep(request, req, chat_body, output, response)
        kind = "response.incomplete" if output.status == "incomplete" else "response.completed"
        yield events.frame({"type": kind, "response": response})


def _stored(request: Request, response_id: str) -> StoredResponse:
    stored = store(request).get(response_id)
    if stored is None:
        raise GatewayError(404, f"no stored response {response_id!r}", "not_found_error", "not_found")
    return stored


@router.get("/v1/responses/{response_id}", response_model=api.ResponseObject, summary="Get a stored response")
async def get_response(response_id: str, request: Request):
    return _stored(request, response_id).response


@router.delete("/v1/responses/{response_id}", response_model=api.ResponseDeleted, summary="Delete a stored response")
async def delete_response(response_id: str, request: Request):
    _stored(request, response_id)
    store(request).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items", response_model=api.InputItemList,
            summary="The input items of a stored response")
async def list_input_items(response_id: str, request: Request):
    items = _stored(request, response_id).input_items
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": False}
