"""A scripted, deterministic InferenceService, and fixtures that serve the gateway in front of it.

The fake "model" always answers ``REPLY`` (split into word/punctuation tokens), and honours what
the gateway must map: max_new_tokens, stop sequences, n, logprobs/top_logprobs, echo and
prompt_logprobs, json_schema/json_object constraints (it answers a JSON object shaped by the
schema), tools with tool_choice required/named (it calls the tool, arguments shaped by its
parameters schema), token-id prompts. Magic inputs script the failures:

* model ``MISSING_MODEL`` (any unknown model) -> NOT_FOUND; model ``OVERLOADED`` -> RESOURCE_EXHAUSTED;
* n > ``MAX_SAMPLES`` -> INVALID_ARGUMENT on ``sampling.n`` (a BadRequest field violation);
* prompt containing ``FAIL_PROMPT`` -> streams fail after two tokens with an ErrorDetail, unary
  calls finish with FINISH_REASON_ERROR;
* prompt containing ``SLOW_PROMPT`` -> a long, slow answer; when the caller goes away (a cancelled
  stream, or the Cancel RPC for a unary call) the fake records the request id in ``cancelled``;
* prompt containing ``ERROR_FINISH_PROMPT`` -> streams end as the real scheduler ends a failed row: two tokens,
  then a ``complete`` whose finish reason is FINISH_REASON_ERROR (no ErrorDetail event);
* prompt containing ``PAUSE_PROMPT`` -> unary calls answer after ``PAUSE_SECONDS`` (longer than a short
  gateway deadline, shorter than the tests' patience).

Every request received is kept in ``requests`` as (method, message), for mapping assertions.

Fixtures (imported by the test modules; conftest is not importable under --import-mode=importlib):

* ``inference_target`` the gRPC address the gateway uses: this fake, or the real service when
  ``GENAI_TEST_INFERENCE_TARGET=host:port`` is set (then ``fake`` skips the fake-only tests);
* ``base_url``         a real HTTP gateway (uvicorn on 127.0.0.1, a free port) in front of it, for
  the official SDKs, which cannot run over an in-process ASGI transport (client timeouts and the
  gateway's gRPC deadline: ``GENAI_TEST_INFERENCE_TIMEOUT``, default 60 s);
* ``model``            the model to ask for: the fake's, or ``GENAI_TEST_INFERENCE_MODEL``;
* ``fake``             the FakeInference instance (skips against a real service).

Test modules load these with ``pytest_plugins`` (one fake and one gateway for the session) and
import the constants; PYTEST_DONT_REWRITE, since the module is imported before pytest registers it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from genai.inference.v1 import inference_service_pb2 as pb
from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from genai.type.v1 import error_pb2, usage_pb2
from genai_core.errors import InvalidArgument, NotFound, ResourceExhausted
from genai_core.server import ServiceSpec
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway
from google.protobuf import json_format

SERVICE_NAME = "genai.inference.v1.InferenceService"
MODEL = "fake-model"
ADAPTER = "fake-adapter"
OVERLOADED = "overloaded-model"
MISSING_MODEL = "no-such-model"
REPLY = "Hello! I am a fake model."
FAIL_PROMPT = "FAIL_MIDSTREAM"
SLOW_PROMPT = "SLOW_PROMPT"
PAUSE_PROMPT = "PAUSE_PROMPT"
ERROR_FINISH_PROMPT = "ERROR_FINISH"
PAUSE_SECONDS = 1.5
MAX_SAMPLES = 8
TOOL_CALL_ID = "call_fake_0"

_PIECE = re.compile(r" ?[A-Za-z0-9_]+| ?[^A-Za-z0-9_\s]|\s+")


def tokens(text: str) -> list[str]:
    """The fake tokenizer: words and punctuation, each with its leading space; they concatenate back to text."""
    return _PIECE.findall(text)


def token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % 50_000


def token_logprob(piece: str, position: int, top: int) -> pb.TokenLogprob:
    """The chosen token is always the most likely one, so greedy checks (lm-eval is_greedy) hold."""
    logprob = -0.1 - 0.01 * position
    alternatives = [pb.TopLogprob(token_id=token_id(piece), text=piece, logprob=logprob)]
    alternatives += [pb.TopLogprob(token_id=50_000 + j, text=f"alt{j}", logprob=-2.0 - j) for j in range(top - 1)]
    return pb.TokenLogprob(token_id=token_id(piece), text=piece, logprob=logprob, top_logprobs=alternatives[:top])


def example(schema: dict[str, Any]) -> Any:
    """A value that validates against simple JSON Schemas (objects, arrays, scalars, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: example(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example(schema["items"])] if isinstance(schema.get("items"), dict) else []
    return {"string": "fake", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "fake")


@dataclass
class Plan:
    """One completion, decided up front: its tokens, how it ends, and a tool call if any."""

    index: int
    pieces: list[str]
    finish: int
    stop_sequence: str | None = None
    tool_call: pb.ToolCall | None = None
    logprobs: list[pb.TokenLogprob] = field(default_factory=list)


class FakeInference(pb_grpc.InferenceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.cancelled: list[str] = []
        self._running: dict[str, asyncio.Task] = {}

    # -- the fake model ------------------------------------------------------------------------

    def _model(self, name: str) -> str:
        if name == OVERLOADED:
            raise ResourceExhausted("the server is at capacity; retry later", reason="OVERLOADED")
        if name in ("", MODEL):
            return MODEL
        if name in (ADAPTER, f"{MODEL}:{ADAPTER}"):
            return f"{MODEL}:{ADAPTER}"
        raise NotFound(
            f"model {name!r} is not served here", reason="MODEL_NOT_FOUND", resource_type="model", resource_name=name
        )

    def _validate(self, s: pb.SamplingParams) -> None:
        if s.HasField("n") and s.n > MAX_SAMPLES:
            raise InvalidArgument.for_field("sampling.n", f"at most {MAX_SAMPLES} samples per request")
        if s.top_logprobs > 20:
            raise InvalidArgument.for_field("sampling.top_logprobs", "at most 20")

    def _answer(self, request: Any, prompt: str) -> tuple[str, pb.ToolCall | None]:
        kind = request.constraint.WhichOneof("kind")
        if kind == "json_schema":
            return json.dumps(example(json_format.MessageToDict(request.constraint.json_schema))), None
        if kind == "json_object":
            return json.dumps({"answer": "fake"}), None
        tools = list(getattr(request, "tools", []))
        choice = request.tool_choice.WhichOneof("choice") if tools else None
        named = request.tool_choice.function_name if choice == "function_name" else ""
        if named or (choice == "mode" and request.tool_choice.mode == pb.TOOL_CHOICE_MODE_REQUIRED):
            tool = next(t for t in tools if t.name == named) if named else tools[0]
            call = pb.ToolCall(id=TOOL_CALL_ID, name=tool.name)
            call.arguments.update(example(json_format.MessageToDict(tool.parameters)))
            return "", call
        if SLOW_PROMPT in prompt:
            return " tick" * 400, None
        return REPLY, None

    def _plans(self, request: Any, prompt: str) -> list[Plan]:
        s = request.sampling
        text, tool_call = self._answer(request, prompt)
        finish, matched = pb.FINISH_REASON_STOP, None
        hits = [(text.find(stop), stop) for stop in s.stop_sequences if stop and stop in text]
        if hits:
            at, matched = min(hits)
            text, finish = text[:at], pb.FINISH_REASON_STOP_SEQUENCE
        pieces = tokens(text)
        if s.HasField("max_new_tokens") and len(pieces) > s.max_new_tokens:
            pieces, finish, matched = pieces[: s.max_new_tokens], pb.FINISH_REASON_LENGTH, None
        if tool_call is not None:
            finish = pb.FINISH_REASON_TOOL_CALLS
        top = s.top_logprobs if s.HasField("top_logprobs") else 0
        plans = []
        for index in range(s.n if s.HasField("n") else 1):
            plan = Plan(index, pieces, finish, matched, tool_call)
            if s.logprobs or s.HasField("top_logprobs"):
                plan.logprobs = [token_logprob(p, i, top) for i, p in enumerate(pieces)]
            plans.append(plan)
        return plans

    def _prompt_logprobs(self, s: pb.SamplingParams, prompt: str) -> list[pb.TokenLogprob]:
        if not s.HasField("prompt_logprobs"):
            return []
        return [token_logprob(p, i, s.prompt_logprobs) for i, p in enumerate(tokens(prompt))]

    @staticmethod
    def _generate_prompt(request: Any) -> str:
        if request.WhichOneof("prompt") == "token_ids":
            prompt = "".join(f" t{i}" for i in request.token_ids.ids)  # one fake token per id
        else:
            prompt = request.text
        if not prompt:  # the real service's rules (genai_inference.generation / .chat), same fields
            raise InvalidArgument.for_field("prompt", "the prompt is empty; send text or token ids")
        return prompt

    @staticmethod
    def _chat_prompt(request: Any) -> str:
        if not request.messages:
            raise InvalidArgument.for_field("messages", "send at least one message")
        names = [t.name for t in request.tools]
        choice = request.tool_choice.WhichOneof("choice")
        if not names and choice == "mode" and request.tool_choice.mode == pb.TOOL_CHOICE_MODE_REQUIRED:
            raise InvalidArgument.for_field("tool_choice", "tool_choice 'required' needs at least one tool")
        if choice == "function_name" and request.tool_choice.function_name not in names:
            raise InvalidArgument.for_field("tool_choice.function_name", "not one of the tools")
        return "\n".join(f"{m.role}: {m.content}" for m in request.messages)

    @staticmethod
    def _usage(prompt: str, plans: list[Plan]) -> usage_pb2.Usage:
        prompt_tokens, completion = len(tokens(prompt)), sum(len(p.pieces) for p in plans)
        return usage_pb2.Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion
        )

    async def _slow(self, request_id: str, prompt: str) -> None:
        """Unary calls on the slow prompt wait long enough for the caller to give up."""
        if PAUSE_PROMPT in prompt:
            await asyncio.sleep(PAUSE_SECONDS)
        if SLOW_PROMPT not in prompt:
            return
        self._running[request_id] = asyncio.current_task()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise
        finally:
            self._running.pop(request_id, None)

    # -- generation ----------------------------------------------------------------------------

    async def Generate(self, request, context):
        self.requests.append(("Generate", request))
        model, prompt = self._model(request.model), self._generate_prompt(request)
        self._validate(request.sampling)
        plans = self._plans(request, prompt)
        await self._slow(request.request_id, prompt)
        echo = prompt if request.sampling.echo else ""
        return pb.GenerateResponse(
            request_id=request.request_id,
            model=model,
            completions=[
                pb.Completion(
                    index=p.index,
                    text=echo + "".join(p.pieces),
                    logprobs=p.logprobs,
                    token_ids=[token_id(t) for t in p.pieces] if request.return_token_ids else [],
                    finish_reason=pb.FINISH_REASON_ERROR if FAIL_PROMPT in prompt else p.finish,
                    **({"stop_sequence": p.stop_sequence} if p.stop_sequence else {}),
                )
                for p in plans
            ],
            prompt_logprobs=self._prompt_logprobs(request.sampling, prompt),
            usage=self._usage(prompt, plans),
        )

    async def Chat(self, request, context):
        self.requests.append(("Chat", request))
        model, prompt = self._model(request.model), self._chat_prompt(request)
        self._validate(request.sampling)
        plans = self._plans(request, prompt)
        await self._slow(request.request_id, prompt)
        return pb.ChatResponse(
            request_id=request.request_id,
            model=model,
            choices=[
                pb.ChatChoice(
                    index=p.index,
                    message=pb.ChatMessage(
                        role="assistant", content="".join(p.pieces), tool_calls=[p.tool_call] if p.tool_call else []
                    ),
                    finish_reason=pb.FINISH_REASON_ERROR if FAIL_PROMPT in prompt else p.finish,
                    logprobs=p.logprobs,
                    **({"stop_sequence": p.stop_sequence} if p.stop_sequence else {}),
                )
                for p in plans
            ],
            usage=self._usage(prompt, plans),
        )

    async def _stream(self, request, prompt: str, plans: list[Plan], delta) -> AsyncIterator[Any]:
        """Yields ``delta(plan, position)`` messages token by token, choices interleaved, then complete."""
        slow = SLOW_PROMPT in prompt
        try:
            for position in range(max((len(p.pieces) for p in plans), default=0)):
                if FAIL_PROMPT in prompt and position == 2:
                    yield error_pb2.ErrorDetail(
                        code="INTERNAL", reason="ENGINE_FAILURE", message="the engine failed mid-stream"
                    )
                    return
                if ERROR_FINISH_PROMPT in prompt and position == 2:
                    break
                for plan in plans:
                    if position < len(plan.pieces):
                        yield delta(plan, position)
                if slow:
                    await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id)
            raise
        yield pb.StreamComplete(
            choices=[
                pb.ChoiceFinish(
                    index=p.index,
                    finish_reason=pb.FINISH_REASON_ERROR if ERROR_FINISH_PROMPT in prompt else p.finish,
                    tool_calls=[p.tool_call] if p.tool_call else [],
                    **({"stop_sequence": p.stop_sequence} if p.stop_sequence else {}),
                )
                for p in plans
            ],
            usage=self._usage(prompt, plans),
            model=self._model(request.model),
            prompt_logprobs=self._prompt_logprobs(request.sampling, prompt),
        )

    async def GenerateStream(self, request, context):
        self.requests.append(("GenerateStream", request))
        self._model(request.model)
        prompt = self._generate_prompt(request)
        self._validate(request.sampling)
        plans = self._plans(request, prompt)

        def delta(plan: Plan, position: int) -> pb.TokenDelta:
            piece = plan.pieces[position]
            return pb.TokenDelta(
                index=plan.index,
                text=piece,
                token_ids=[token_id(piece)] if request.return_token_ids else [],
                logprobs=plan.logprobs[position : position + 1],
            )

        async for item in self._stream(request, prompt, plans, delta):
            yield _event(pb.GenerateStreamResponse, request.request_id, item)

    async def ChatStream(self, request, context):
        self.requests.append(("ChatStream", request))
        self._model(request.model)
        prompt = self._chat_prompt(request)
        self._validate(request.sampling)
        plans = self._plans(request, prompt)
        for plan in plans:
            if plan.tool_call is not None:  # the arguments' JSON text is what the model "generates"
                plan.pieces = ["", *tokens(json.dumps(json_format.MessageToDict(plan.tool_call.arguments)))]

        def delta(plan: Plan, position: int) -> pb.ChatDelta:
            piece = plan.pieces[position]
            out = pb.ChatDelta(index=plan.index, role="assistant" if position == 0 else "")
            if plan.tool_call is None:
                out.content = piece
                out.logprobs.extend(plan.logprobs[position : position + 1])
            elif position == 0:
                out.tool_calls.append(pb.ToolCallDelta(index=0, id=plan.tool_call.id, name=plan.tool_call.name))
            else:
                out.tool_calls.append(pb.ToolCallDelta(index=0, arguments_delta=piece))
            return out

        async for item in self._stream(request, prompt, plans, delta):
            yield _event(pb.ChatStreamResponse, request.request_id, item)

    async def Cancel(self, request, context):
        self.requests.append(("Cancel", request))
        task = self._running.get(request.target_request_id)
        if task is not None:
            task.cancel()
        return pb.CancelResponse(request_id=request.request_id, cancelled=task is not None)

    # -- models --------------------------------------------------------------------------------

    @staticmethod
    def _models() -> list[pb.Model]:
        base = pb.Model(
            id=MODEL,
            kind=pb.Model.KIND_BASE,
            engine="fake",
            context_length=2048,
            max_new_tokens=1024,
            vocab_size=50_000,
            has_chat_template=True,
        )
        adapter = pb.Model(
            id=ADAPTER,
            kind=pb.Model.KIND_ADAPTER,
            base_model=MODEL,
            engine="fake",
            context_length=2048,
            source="/adapters/fake-adapter",
        )
        base.load_time.FromSeconds(1_700_000_000)
        adapter.load_time.FromSeconds(1_700_000_100)
        return [base, adapter]

    async def ListModels(self, request, context):
        self.requests.append(("ListModels", request))
        return pb.ListModelsResponse(request_id=request.request_id, models=self._models(), default_model=MODEL)

    async def GetModel(self, request, context):
        self.requests.append(("GetModel", request))
        name = self._model(request.model).split(":")[-1]
        return pb.GetModelResponse(request_id=request.request_id, model=next(m for m in self._models() if m.id == name))

    async def GetInfo(self, request, context):
        return pb.GetInfoResponse(
            request_id=request.request_id,
            engine="fake",
            default_model=self._models()[0],
            max_samples=MAX_SAMPLES,
            max_top_logprobs=20,
        )

    def last(self, method: str) -> Any:
        return next(message for name, message in reversed(self.requests) if name == method)


def _event(cls, request_id: str, item: Any) -> Any:
    if isinstance(item, error_pb2.ErrorDetail):
        return cls(request_id=request_id, error=item)
    if isinstance(item, pb.StreamComplete):
        return cls(request_id=request_id, complete=item)
    return cls(request_id=request_id, delta=item)


def spec(fake: FakeInference) -> ServiceSpec:
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_InferenceServiceServicer_to_server(fake, server))


# -- fixtures -----------------------------------------------------------------------------------

REAL_TARGET = os.environ.get("GENAI_TEST_INFERENCE_TARGET", "")
# Seconds a client waits, and the gateway's gRPC deadline; a real model on a CPU may need more.
TIMEOUT = float(os.environ.get("GENAI_TEST_INFERENCE_TIMEOUT", "60"))


@pytest.fixture(scope="session")
async def fake_server() -> AsyncIterator[tuple[FakeInference | None, str]]:
    if REAL_TARGET:
        yield None, REAL_TARGET
        return
    fake = FakeInference()
    async with running_server([spec(fake)]) as (server, _channel):
        yield fake, f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def inference_target(fake_server) -> str:
    return fake_server[1]


@pytest.fixture(scope="session")
def fake(fake_server) -> FakeInference:
    if fake_server[0] is None:
        pytest.skip("checks the fake's scripted behaviour; GENAI_TEST_INFERENCE_TARGET points at a real service")
    return fake_server[0]


@pytest.fixture(scope="session")
def model() -> str:
    return os.environ.get("GENAI_TEST_INFERENCE_MODEL", MODEL)


@pytest.fixture(scope="session")
async def base_url(inference_target: str) -> AsyncIterator[str]:
    settings = GatewaySettings(targets={"inference": inference_target}, request_timeout=TIMEOUT)
    async with serve_gateway(settings) as url:
        yield url
