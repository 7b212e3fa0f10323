"""TGI-compatible routes: POST /generate, POST /generate_stream and POST / (TGI's compat route).

Hugging Face's `text-generation` client posts to the base URL itself (``Client(base_url).generate``
expects a one-element list, ``generate_stream`` an event stream), so POST / is what makes the
client work unchanged; /generate and /generate_stream are TGI's documented routes.

Errors keep the one gRPC -> HTTP table (errors.py) and render TGI's body,
``{"error": "...", "error_type": "..."}``: validation errors answer 422 as TGI does, and the
error_type is what the client maps to its exceptions (validation, overloaded, generation).

Finish reasons: STOP -> "eos_token", STOP_SEQUENCE -> "stop_sequence", LENGTH -> "length";
TOOL_CALLS and CANCELLED -> "eos_token" (TGI has no other value, and the client rejects unknown
ones); ERROR -> an error. Not supported, and rejected with 422 rather than silently ignored:
best_of > 1, typical_p, truncate, watermark. Token ``special`` is always false: the inference
contract does not say which tokens are special.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from genai.inference.v1 import inference_service_pb2 as pb
from google.protobuf import struct_pb2

from genai_gateway.errors import GatewayError, validation_error
from genai_gateway.openapi import stream_response
from genai_gateway.routes import calls, sse
from genai_gateway.routes import tgi_protocol as api
from genai_gateway.routes._fields import set_present
from genai_gateway.routing import ApiRoute

_FINISH = {
    pb.FINISH_REASON_UNSPECIFIED: "eos_token",
    pb.FINISH_REASON_STOP: "eos_token",
    pb.FINISH_REASON_STOP_SEQUENCE: "stop_sequence",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_TOOL_CALLS: "eos_token",
    pb.FINISH_REASON_CANCELLED: "eos_token",
}
# OpenAI error type (from the one table) -> TGI error_type; the rest drop their "_error" suffix.
_ERROR_TYPES = {"invalid_request_error": "validation", "rate_limit_error": "overloaded", "server_error": "generation"}
_RENAMES = {
    r"^(text|token_ids|prompt)": "inputs",
    r"^sampling\.max_new_tokens": "parameters.max_new_tokens",
    r"^sampling\.stop_sequences": "parameters.stop",
    r"^sampling\.(top_logprobs|logprobs)": "parameters.top_n_tokens",
    r"^sampling\.prompt_logprobs": "parameters.decoder_input_details",
    r"^sampling\.(\w+)": r"parameters.\1",
    r"^constraint.*": "parameters.grammar",
    r"^model": "parameters.adapter_id",
}


def _error_body(exc: GatewayError) -> dict[str, str]:
    return {"error": exc.message, "error_type": _ERROR_TYPES.get(exc.type, exc.type.removesuffix("_error"))}


def _error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(_error_body(exc), status_code=422 if exc.status == 400 else exc.status, headers=exc.headers)


def _invalid(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"{param}: {message}", "invalid_request_error", "invalid_argument", param)


class TgiRoute(ApiRoute):
    """Renders every error of these routes (auth and validation included) in TGI's shape."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except GatewayError as exc:
                return _error_response(exc)
            except RequestValidationError as exc:
                return _error_response(validation_error(exc))

        return route


router = APIRouter(tags=["tgi"], route_class=TgiRoute)



def _finish(reason: int) -> str:
    if reason == pb.FINISH_REASON_ERROR:
        raise GatewayError(500, "the generation failed on the inference service", "server_error", "generation_failed")
    return _FINISH[reason]


def _constraint(grammar: api.Grammar, message: pb.GenerateRequest) -> None:
    if grammar.type == "regex":
        if not isinstance(grammar.value, str) or not grammar.value:
            raise _invalid("parameters.grammar.value", "a regex grammar needs the expression as a string")
        message.constraint.regex = grammar.value
        return
    schema = grammar.value
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise _invalid("parameters.grammar.value", f"not valid JSON ({exc})") from exc
    if not isinstance(schema, dict):
        raise _invalid("parameters.grammar.value", "a json grammar needs a JSON Schema object")
    struct = struct_pb2.Struct()
    struct.update(schema)
    message.constraint.json_schema.CopyFrom(struct)


def _request(body: api.GenerateRequest, rid: str, *, stream: bool) -> tuple[pb.GenerateRequest, int | None]:
    """The GenerateRequest, and the seed to report (set whenever sampling, as TGI reports it)."""
    p = body.parameters
    # best_of > 1, typical_p, truncate and watermark are rejected by the schema (tgi_protocol).
    s = pb.SamplingParams(stop_sequences=p.stop)
    if p.max_new_tokens is not None:
        s.max_new_tokens = p.max_new_tokens
    # TGI samples when do_sample is set or when any sampling parameter is; otherwise it is greedy.
    sampling = p.do_sample or any(v is not None for v in (p.temperature, p.top_k, p.top_p))
    seed = None
    if not sampling:
        s.temperature = 0.0
    else:
        seed = p.seed if p.seed is not None else random.getrandbits(53)  # reported back (and accepted again), so a run can be repeated
        s.seed = seed
        set_present(s, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p)
    set_present(s, repetition_penalty=p.repetition_penalty, frequency_penalty=p.frequency_penalty)
    # Streams always need per-token ids and logprobs (TGI sends them in every event); /generate only for details.
    if stream or p.details:
        s.logprobs = True
        if p.top_n_tokens:
            s.top_logprobs = p.top_n_tokens
    if p.details and p.decoder_input_details and not stream:
        s.prompt_logprobs = 0
    message = pb.GenerateRequest(
        request_id=rid, model=p.adapter_id or "", text=body.inputs, sampling=s, return_token_ids=True
    )
    if p.grammar is not None:
        _constraint(p.grammar, message)
    return message, seed


def _token(t: pb.TokenLogprob, text: str | None = None) -> dict[str, Any]:
    return {
        "id": t.token_id,
        "text": t.text if text is None else text,
        "logprob": sse.logprob(t.logprob),
        "special": False,
    }


async def _generate(body: api.GenerateRequest, request: Request) -> api.GenerateResponse:
    message, seed = _request(body, calls.request_id(request), stream=False)
    stub = calls.stub(request, "inference")

    async def cancel() -> None:  # what frees the service's slot: a unary call's cancel() does not reach it
        await stub.Cancel(
            pb.CancelRequest(request_id=f"{message.request_id}-cancel", target_request_id=message.request_id), timeout=5
        )

    reply = await calls.unary(request, stub.Generate(message, timeout=calls.deadlines(request).generate()), _RENAMES, cancel)
    c = reply.completions[0]
    finish = _finish(c.finish_reason)  # a failed generation is an error even when no details were asked for
    text = (body.inputs if body.parameters.return_full_text else "") + c.text
    p = body.parameters
    if not p.details:
        return api.GenerateResponse(generated_text=text)
    top = {"top_tokens": [[_token(a) for a in t.top_logprobs] for t in c.logprobs]} if p.top_n_tokens else {}
    details = api.Details(
        finish_reason=finish,
        generated_tokens=reply.usage.completion_tokens or len(c.logprobs),
        seed=seed,
        prefill=[
            {"id": t.token_id, "text": t.text, "logprob": None if i == 0 else sse.logprob(t.logprob)}
            for i, t in enumerate(reply.prompt_logprobs)
        ],
        tokens=[_token(t) for t in c.logprobs],
        **top,
    )
    return api.GenerateResponse(generated_text=text, details=details)


async def _events(stream: sse.GrpcStream, body: api.GenerateRequest, seed: int | None) -> AsyncIterator[bytes]:
    """One event per token, as TGI sends them; the last carries generated_text and details.

    A delta may hold several tokens and a text decoded across them (or text and no token, when a
    held-back stop-sequence prefix is released), so its text goes on its last token and concatenating
    token texts gives the generated text exactly. The last event is held until the stream's end.
    """
    top_n = body.parameters.top_n_tokens
    pending: dict[str, Any] | None = None
    carry, index, parts = "", 0, []
    async for message in stream:
        if message.WhichOneof("event") == "delta":
            d = message.delta
            parts.append(d.text)
            tokens = list(d.logprobs) or [pb.TokenLogprob(token_id=i) for i in d.token_ids]
            if not tokens:
                if pending is not None:
                    pending["token"]["text"] += d.text
                else:
                    carry += d.text
                continue
            for k, t in enumerate(tokens):
                if pending is not None:
                    yield sse.data(pending, space=False)
                index += 1
                last = k == len(tokens) - 1
                pending = {"index": index, "token": _token(t, carry + d.text if last else "")}
                if not d.logprobs:
                    pending["token"]["logprob"] = None
                if top_n:
                    pending["top_tokens"] = [_token(a) for a in t.top_logprobs]
                pending.update(generated_text=None, details=None)
                carry = "" if last else carry
            continue
        complete = message.complete
        finish = complete.choices[0] if complete.choices else pb.ChoiceFinish()
        if pending is None:  # nothing was generated: TGI still ends with one token event
            pending = {"index": 1, "token": {"id": 0, "text": carry, "logprob": None, "special": True}}
            if top_n:
                pending["top_tokens"] = []
        text = "".join(parts)
        pending["generated_text"] = (body.inputs if body.parameters.return_full_text else "") + text
        pending["details"] = {
            "finish_reason": _finish(finish.finish_reason),
            "generated_tokens": complete.usage.completion_tokens or index,
            "seed": seed,
            "input_length": complete.usage.prompt_tokens,
        }
        yield sse.data(pending, space=False)
        pending = None


def _tgi_error_frame(exc: GatewayError) -> bytes:
    return sse.data(_error_body(exc), space=False)


async def _generate_stream(body: api.GenerateRequest, request: Request) -> sse.EventStream:
    message, seed = _request(body, calls.request_id(request), stream=True)
    streaming = pb.GenerateStreamRequest.FromString(message.SerializeToString())  # same fields and numbers
    stub = calls.stub(request, "inference")
    streams = await sse.open_streams([lambda: stub.GenerateStream(streaming, timeout=calls.deadlines(request).generate())], [_RENAMES])
    # TGI ends /generate_stream without a [DONE] event (only its chat route sends one).
    return sse.EventStream(sse.events(_events(streams[0], body, seed), streams, _tgi_error_frame))


@router.post("/generate", response_model=api.GenerateResponse, response_model_exclude_unset=True,
             summary="TGI generate")
async def generate(body: api.GenerateRequest, request: Request) -> api.GenerateResponse:
    return await _generate(body, request)


@router.post("/generate_stream", response_class=sse.EventStream,
             responses=stream_response("One event per token; the last carries generated_text and details"),
             summary="TGI generate, streamed as server-sent events (one per token)")
async def generate_stream(body: api.GenerateRequest, request: Request) -> sse.EventStream:
    return await _generate_stream(body, request)


@router.post(
    "/",
    response_model=list[api.GenerateResponse],
    response_model_exclude_unset=True,
    summary="TGI compat route: a one-element list, or an event stream when stream is true",
    responses=stream_response("A one-element list, or token events when stream is true"),
)
async def compat_generate(body: api.GenerateRequest, request: Request):
    if body.stream:
        return await _generate_stream(body, request)
    return [await _generate(body, request)]
