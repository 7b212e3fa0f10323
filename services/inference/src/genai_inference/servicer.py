"""gRPC adapter for the inference domain: proto in, domain call, proto out."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from genai.inference.v1 import inference_service_pb2 as pb
from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from genai.type.v1 import error_pb2, usage_pb2
from genai_core.deferred import Deferred
from genai_core.errors import GenAIError, InvalidArgument
from genai_core.server import ServiceSpec
from genai_core.structs import struct_to_dict

from genai_inference.registry import ModelRegistry
from genai_inference.service import ChatOptions, Inference, split_tool_calls
from genai_inference.types import (
    Constraint,
    ConstraintKind,
    DoneEvent,
    FinishEvent,
    FinishReason,
    ModelInfo,
    Sampling,
    TokenEvent,
    TokenLogprob,
    ToolSpec,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name

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


def _rid(request) -> str:
    return request.request_id or uuid.uuid4().hex


def sampling_from_proto(s: pb.SamplingParams, default_max: int) -> Sampling:
    def opt(name, default):
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


def _logprobs(items: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> list[pb.TokenLogprob]:
    return [
        pb.TokenLogprob(
            token_id=t.token_id, text=t.text, logprob=t.logprob,
            top_logprobs=[pb.TopLogprob(token_id=a.token_id, text=a.text, logprob=a.logprob) for a in t.top],
        )
        for t in items
    ]


def _usage(done: DoneEvent) -> usage_pb2.Usage:
    u = done.usage
    return usage_pb2.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           total_tokens=u.total_tokens, cached_prompt_tokens=u.cached_prompt_tokens)


def _timings(done: DoneEvent) -> usage_pb2.Timings:
    out = usage_pb2.Timings()
    out.queue_duration.FromNanoseconds(int(done.timings.queue_s * 1e9))
    out.time_to_first_token.FromNanoseconds(int(done.timings.time_to_first_token_s * 1e9))
    out.total_duration.FromNanoseconds(int(done.timings.total_s * 1e9))
    return out


def _finish_fields(finish: FinishEvent | None) -> dict:
    if finish is None:
        return {"finish_reason": pb.FINISH_REASON_ERROR}
    fields = {"finish_reason": _FINISH[finish.reason]}
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


def _tool_call(call) -> pb.ToolCall:
    out = pb.ToolCall(id=call.id, name=call.name)
    if call.arguments is not None:
        out.arguments.update(call.arguments)
    else:
        out.unparsed_arguments = call.raw_arguments
    return out


def _error(exc: Exception) -> error_pb2.ErrorDetail:
    if isinstance(exc, GenAIError):
        return error_pb2.ErrorDetail(code=exc.code.value, reason=exc.reason or exc.code.value, message=exc.message)
    return error_pb2.ErrorDetail(code="INTERNAL", reason="INTERNAL", message="internal error during generation")


def _messages(request) -> list[dict]:
    out = []
    for i, m in enumerate(request.messages):
        message: dict = {"role": m.role, "content": m.content}
        if m.HasField("name"):
            message["name"] = m.name
        if m.HasField("tool_call_id"):
            message["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {
                    "name": c.name,
                    "arguments": struct_to_dict(c.arguments) if c.HasField("arguments")
                    else c.unparsed_arguments}}
                for c in m.tool_calls
            ]
        if not m.role:
            raise InvalidArgument.for_field(f"messages[{i}].role", "set a role such as 'user'")
        out.append(message)
    return out


def _chat_options(request) -> ChatOptions:
    tools = tuple(
        ToolSpec(t.name, t.description, struct_to_dict(t.parameters)) for t in request.tools
    )
    for i, tool in enumerate(tools):
        if not tool.name:
            raise InvalidArgument.for_field(f"tools[{i}].name", "every tool needs a name")
    choice = request.tool_choice.WhichOneof("choice")
    mode, name = "auto", ""
    if choice == "mode":
        mode = _TOOL_MODES[request.tool_choice.mode]
    elif choice == "function_name":
        mode, name = "named", request.tool_choice.function_name
    if mode in ("required", "named") and not tools:
        raise InvalidArgument.for_field("tool_choice", f"tool_choice '{mode}' needs at least one tool")
    # Unset means one call: small models asked for "one or more" calls tend to repeat the same call until
    # max_new_tokens. Clients that want several calls in one turn say parallel_tool_calls=true.
    parallel = request.parallel_tool_calls if request.HasField("parallel_tool_calls") else False
    kwargs = struct_to_dict(request.chat_template_kwargs) if request.HasField("chat_template_kwargs") else {}
    return ChatOptions(tools, mode, name, parallel, kwargs)


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, models: Deferred[ModelRegistry]) -> None:
        self._deferred = models

    @property
    def _models(self) -> ModelRegistry:
        return self._deferred.get()

    @property
    def _inference(self) -> Inference:
        """The default model's Inference (server-wide limits and settings)."""
        return self._models.default

    def _deadline(self, context) -> float | None:
        remaining = context.time_remaining()
        return time.monotonic() + remaining if remaining is not None else None

    def _generation(self, request, context, *, tools=False) -> tuple[Inference, object]:
        inference, model = self._models.route(request.model)
        return inference, self._request(inference, model, request, context, tools=tools)

    def _request(self, inference: Inference, model: str, request, context, *, tools=False):
        sampling = sampling_from_proto(request.sampling, inference.settings.max_new_tokens)
        constraint = constraint_from_proto(request.constraint)
        if tools:
            text, tool_constraint = inference.render_chat(_messages(request), _chat_options(request))
            return inference.request(
                _rid(request), model, text=text, sampling=sampling, constraint=tool_constraint or constraint,
                deadline=self._deadline(context), add_special_tokens=False,
            )
        kind = request.WhichOneof("prompt")
        if kind is None:
            raise InvalidArgument.for_field("prompt", "send the prompt as text or token_ids")
        return inference.request(
            _rid(request), model, text=request.text if kind == "text" else "",
            ids=list(request.token_ids.ids) if kind == "token_ids" else (), sampling=sampling,
            constraint=constraint, deadline=self._deadline(context),
        )

    # -- generation -------------------------------------------------------------------------

    async def Generate(self, request, context):
        inference, gen = self._generation(request, context)
        result = await inference.collect(gen)
        echo = gen.sampling.echo
        return pb.GenerateResponse(
            request_id=gen.request_id, model=self._models.public_name(result.model),
            completions=[
                pb.Completion(
                    index=c.index, text=(gen.prompt_text if echo else "") + c.text,
                    token_ids=c.token_ids if request.return_token_ids else [],
                    logprobs=_logprobs(c.logprobs), **_finish_fields(c.finish),
                )
                for c in result.completions
            ],
            prompt_logprobs=_logprobs(result.done.prompt_logprobs),
            usage=_usage(result.done), timings=_timings(result.done),
        )

    async def GenerateStream(self, request, context) -> AsyncIterator[pb.GenerateStreamResponse]:
        inference, gen = self._generation(request, context)
        rid, model = gen.request_id, self._models.public_name(gen.model if not gen.adapter else f"{gen.model}:{gen.adapter}")
        finishes: dict[int, FinishEvent] = {}
        started = False
        try:
            async for event in inference.stream(gen):
                if isinstance(event, TokenEvent):
                    started = True
                    yield pb.GenerateStreamResponse(request_id=rid, delta=pb.TokenDelta(
                        index=event.index, text=event.text,
                        token_ids=event.token_ids if request.return_token_ids else [],
                        logprobs=_logprobs(event.logprobs)))
                elif isinstance(event, FinishEvent):
                    finishes[event.index] = event
                elif isinstance(event, DoneEvent):
                    yield pb.GenerateStreamResponse(request_id=rid, complete=pb.StreamComplete(
                        choices=[pb.ChoiceFinish(index=i, **_finish_fields(f)) for i, f in sorted(finishes.items())],
                        usage=_usage(event), timings=_timings(event), model=model,
                        prompt_logprobs=_logprobs(event.prompt_logprobs)))
        except Exception as exc:
            if not started:
                raise
            yield pb.GenerateStreamResponse(request_id=rid, error=_error(exc))

    async def Chat(self, request, context):
        inference, gen = self._generation(request, context, tools=True)
        has_tools = bool(request.tools)
        result = await inference.collect(gen, tools=has_tools)
        return pb.ChatResponse(
            request_id=gen.request_id, model=self._models.public_name(result.model),
            choices=[
                pb.ChatChoice(
                    index=c.index,
                    message=pb.ChatMessage(role="assistant", content=c.text,
                                           tool_calls=[_tool_call(t) for t in c.tool_calls]),
                    logprobs=_logprobs(c.logprobs),
                    token_ids=c.token_ids if request.return_token_ids else [],
                    **_finish_fields(c.finish),
                )
                for c in result.completions
            ],
            usage=_usage(result.done), timings=_timings(result.done),
        )

    async def ChatStream(self, request, context) -> AsyncIterator[pb.ChatStreamResponse]:
        from genai_inference.chatstream import ChatStreamAssembler

        inference, gen = self._generation(request, context, tools=True)
        rid, model = gen.request_id, self._models.public_name(gen.model if not gen.adapter else f"{gen.model}:{gen.adapter}")
        assembler = ChatStreamAssembler(gen.sampling.n, tools=bool(request.tools))
        started = False
        try:
            async for event in inference.stream(gen):
                if isinstance(event, TokenEvent):
                    for delta in assembler.push(event):
                        started = True
                        yield pb.ChatStreamResponse(request_id=rid, delta=pb.ChatDelta(
                            index=delta.index, role=delta.role, content=delta.content,
                            token_ids=event.token_ids if request.return_token_ids else [],
                            logprobs=_logprobs(delta.logprobs),
                            tool_calls=[pb.ToolCallDelta(index=t.index, id=t.id, name=t.name,
                                                         arguments_delta=t.arguments) for t in delta.tool_calls]))
                elif isinstance(event, FinishEvent):
                    for delta in assembler.finish(event):
                        yield pb.ChatStreamResponse(request_id=rid, delta=pb.ChatDelta(
                            index=delta.index, content=delta.content,
                            tool_calls=[pb.ToolCallDelta(index=t.index, id=t.id, name=t.name,
                                                         arguments_delta=t.arguments) for t in delta.tool_calls]))
                elif isinstance(event, DoneEvent):
                    yield pb.ChatStreamResponse(request_id=rid, complete=pb.StreamComplete(
                        choices=[pb.ChoiceFinish(index=r.index, tool_calls=[_tool_call(t) for t in r.tool_calls],
                                                 **_finish_fields(r.finish))
                                 for r in assembler.results()],
                        usage=_usage(event), timings=_timings(event), model=model))
        except Exception as exc:
            if not started:
                raise
            yield pb.ChatStreamResponse(request_id=rid, error=_error(exc))

    async def Cancel(self, request, context):
        if not request.target_request_id:
            raise InvalidArgument.for_field("target_request_id", "name the request to cancel")
        return pb.CancelResponse(request_id=_rid(request),
                                 cancelled=self._models.cancel(request.target_request_id))

    # -- models -----------------------------------------------------------------------------

    async def ListModels(self, request, context):
        models = self._models.models()
        if request.kind == pb.Model.KIND_BASE:
            models = [m for m in models if not m.is_adapter]
        elif request.kind == pb.Model.KIND_ADAPTER:
            models = [m for m in models if m.is_adapter]
        return pb.ListModelsResponse(request_id=_rid(request), models=[model_to_proto(m) for m in models],
                                     default_model=self._inference.base.id)

    async def GetModel(self, request, context):
        return pb.GetModelResponse(request_id=_rid(request),
                                   model=model_to_proto(self._models.get_model(request.model)))

    async def LoadAdapter(self, request, context):
        import asyncio

        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument.for_field("path", "give the adapter's directory or a fine-tune artifact_id")
        info = await asyncio.to_thread(self._models.load_adapter, request.adapter_name, request.base_model,
                                       path=request.path, artifact_id=request.artifact_id)
        return pb.LoadAdapterResponse(request_id=_rid(request), model=model_to_proto(info))

    async def UnloadAdapter(self, request, context):
        info = self._models.unload_adapter(request.adapter_name)
        return pb.UnloadAdapterResponse(request_id=_rid(request), model=model_to_proto(info))

    async def LoadModel(self, request, context):
        if request.WhichOneof("source") is None:
            raise InvalidArgument.for_field("path", "give the model's directory or a fine-tune artifact_id")
        info = await self._models.load_model(request.model_id, request.base_model, path=request.path,
                                             artifact_id=request.artifact_id)
        return pb.LoadModelResponse(request_id=_rid(request), model=model_to_proto(info))

    async def UnloadModel(self, request, context):
        info = await self._models.unload_model(request.model_id)
        return pb.UnloadModelResponse(request_id=_rid(request), model=model_to_proto(info))

    async def GetInfo(self, request, context):
        s = self._inference.settings
        backend = self._inference.backend
        return pb.GetInfoResponse(
            request_id=_rid(request), engine=backend.name, engine_version="",
            default_model=model_to_proto(self._inference.base), max_batch_size=s.max_batch_size,
            max_message_bytes=0, max_loaded_adapters=s.max_loaded_adapters, max_stop_sequences=s.max_stop_sequences,
            max_top_logprobs=s.max_top_logprobs, max_samples=s.max_samples, max_loaded_models=s.max_loaded_models,
        )

    async def GenerateImages(self, request, context):
        import asyncio

        model = self._models.image_model(request.model)
        made = await asyncio.to_thread(model.generate, request.prompt, n=request.n or 1, size=request.size,
                                       steps=request.steps, seed=request.seed if request.HasField("seed") else None)
        timings = usage_pb2.Timings()
        timings.total_duration.FromNanoseconds(int(made.seconds * 1e9))
        return pb.GenerateImagesResponse(
            request_id=_rid(request), model=model.id, timings=timings,
            images=[pb.GeneratedImage(png=png, label=label) for png, label in zip(made.images, made.labels, strict=True)])


def service_spec(models: Deferred[ModelRegistry]) -> ServiceSpec:
    servicer = InferenceServicer(models)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_InferenceServiceServicer_to_server(servicer, server))


__all__ = ["InferenceServicer", "service_spec", "split_tool_calls"]
