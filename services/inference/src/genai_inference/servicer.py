"""gRPC adapter for the inference domain: proto in (``convert``), domain call, proto out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from genai.inference.v1 import inference_service_pb2 as pb
from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from genai_core import rpc, spans
from genai_core.deferred import Deferred
from genai_core.errors import InvalidArgument
from genai_core.server import ServiceSpec

from genai_inference import convert, traces
from genai_inference.chat import CompletionResult
from genai_inference.chatstream import ChatStreamAssembler
from genai_inference.generation import Inference
from genai_inference.registry import ModelRegistry
from genai_inference.types import DoneEvent, FinishEvent, GenerationRequest, TokenEvent

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _model_name(gen: GenerationRequest) -> str:
    return gen.model if not gen.adapter else f"{gen.model}:{gen.adapter}"


def _deadline(context: Any) -> float | None:
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None else None


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, models: Deferred[ModelRegistry]) -> None:
        self._deferred = models

    @property
    def _models(self) -> ModelRegistry:
        return self._deferred.get()

    @property
    def _inference(self) -> Inference:
        """The default model's Inference: server-wide settings and limits."""
        return self._models.default

    def _generation(self, request: pb.GenerateRequest, context: Any) -> tuple[Inference, GenerationRequest]:
        inference, model = self._models.route(request.model)
        text, ids = convert.prompt_from_proto(request)
        return inference, inference.request(
            rpc.request_id(request), model, text=text, ids=ids,
            sampling=convert.sampling_from_proto(request.sampling, inference.settings.max_new_tokens),
            constraint=convert.constraint_from_proto(request.constraint), deadline=_deadline(context),
        )

    def _chat(self, request: pb.ChatRequest, context: Any) -> tuple[Inference, GenerationRequest]:
        inference, model = self._models.route(request.model)
        text, tool_constraint = inference.render_chat(
            convert.messages_from_proto(request.messages), convert.chat_options_from_proto(request))
        return inference, inference.request(
            rpc.request_id(request), model, text=text,
            sampling=convert.sampling_from_proto(request.sampling, inference.settings.max_new_tokens),
            constraint=tool_constraint or convert.constraint_from_proto(request.constraint),
            deadline=_deadline(context), add_special_tokens=False,
        )

    @staticmethod
    def _traced(operation: spans.Operation, inference: Inference, gen: GenerationRequest, request: Any, *,
                stream: bool) -> spans.GenAISpan:
        """The RPC's span as the LLM call it is (``traces``); a chat's messages only as captured content."""
        chat = operation is spans.Operation.CHAT
        return traces.llm_span(operation, gen, inference.backend.name, stream=stream, chat=(lambda: (
            convert.messages_from_proto(request.messages), convert.chat_options_from_proto(request).tools))
            if chat else None)

    # -- generation -------------------------------------------------------------------------

    async def Generate(self, request, context):
        inference, gen = self._generation(request, context)
        span = self._traced(spans.Operation.TEXT_COMPLETION, inference, gen, request, stream=False)
        result = await inference.collect(gen)
        traces.finished(span, gen, result.done, traces.reasons([c.finish for c in result.completions]),
                        result.completions, first_token=True)
        echo = gen.prompt_text if gen.sampling.echo else ""
        return pb.GenerateResponse(
            request_id=gen.request_id, model=self._models.public_name(result.model),
            completions=[
                pb.Completion(
                    index=c.index, text=echo + c.text, token_ids=c.token_ids if request.return_token_ids else [],
                    logprobs=convert.logprobs_to_proto(c.logprobs), **convert.finish_fields(c.finish),
                )
                for c in result.completions
            ],
            prompt_logprobs=convert.logprobs_to_proto(result.done.prompt_logprobs),
            usage=convert.usage_to_proto(result.done), timings=convert.timings_to_proto(result.done),
        )

    async def GenerateStream(self, request, context) -> AsyncIterator[pb.GenerateStreamResponse]:
        inference, gen = self._generation(request, context)
        ids = request.return_token_ids
        span = self._traced(spans.Operation.TEXT_COMPLETION, inference, gen, request, stream=True)
        model = self._models.public_name(_model_name(gen))

        async def events() -> AsyncIterator[tuple[str, Any]]:
            finishes: dict[int, FinishEvent] = {}
            texts: dict[int, str] = {}
            async for event in inference.stream(gen):
                if isinstance(event, TokenEvent):
                    if not texts:
                        span.first_token()
                    texts[event.index] = texts.get(event.index, "") + event.text
                    yield "delta", pb.TokenDelta(
                        index=event.index, text=event.text, token_ids=event.token_ids if ids else [],
                        logprobs=convert.logprobs_to_proto(event.logprobs))
                elif isinstance(event, FinishEvent):
                    finishes[event.index] = event
                elif isinstance(event, DoneEvent):
                    order = sorted(finishes)
                    traces.finished(span, gen, event, traces.reasons([finishes[i] for i in order]),
                                    [CompletionResult(i, texts.get(i, "")) for i in order])
                    yield "complete", pb.StreamComplete(
                        choices=[pb.ChoiceFinish(index=i, **convert.finish_fields(f)) for i, f in sorted(finishes.items())],
                        usage=convert.usage_to_proto(event), timings=convert.timings_to_proto(event),
                        model=model, prompt_logprobs=convert.logprobs_to_proto(event.prompt_logprobs))

        async for kind, message in rpc.in_band(events(), "generation", gen.request_id):
            yield pb.GenerateStreamResponse(request_id=gen.request_id, **{kind: message})

    async def Chat(self, request, context):
        inference, gen = self._chat(request, context)
        span = self._traced(spans.Operation.CHAT, inference, gen, request, stream=False)
        result = await inference.collect(gen, tools=bool(request.tools))
        traces.finished(span, gen, result.done, traces.reasons([c.finish for c in result.completions]),
                        result.completions, first_token=True)
        return pb.ChatResponse(
            request_id=gen.request_id, model=self._models.public_name(result.model),
            choices=[
                pb.ChatChoice(
                    index=c.index,
                    message=pb.ChatMessage(role="assistant", content=c.text,
                                           tool_calls=[convert.tool_call_to_proto(t) for t in c.tool_calls]),
                    logprobs=convert.logprobs_to_proto(c.logprobs),
                    token_ids=c.token_ids if request.return_token_ids else [],
                    **convert.finish_fields(c.finish),
                )
                for c in result.completions
            ],
            usage=convert.usage_to_proto(result.done), timings=convert.timings_to_proto(result.done),
        )

    async def ChatStream(self, request, context) -> AsyncIterator[pb.ChatStreamResponse]:
        inference, gen = self._chat(request, context)
        assembler = ChatStreamAssembler(gen.sampling.n, tools=bool(request.tools))
        ids = request.return_token_ids
        span = self._traced(spans.Operation.CHAT, inference, gen, request, stream=True)
        model = self._models.public_name(_model_name(gen))

        def delta(d, token_ids=()) -> pb.ChatDelta:  # noqa: ANN001
            return pb.ChatDelta(
                index=d.index, role=d.role, content=d.content, token_ids=token_ids,
                logprobs=convert.logprobs_to_proto(d.logprobs),
                tool_calls=[pb.ToolCallDelta(index=t.index, id=t.id, name=t.name, arguments_delta=t.arguments)
                            for t in d.tool_calls])

        async def events() -> AsyncIterator[tuple[str, Any]]:
            first = True
            async for event in inference.stream(gen):
                if isinstance(event, TokenEvent):
                    if first:
                        first = False
                        span.first_token()
                    for d in assembler.push(event):
                        yield "delta", delta(d, event.token_ids if ids else ())
                elif isinstance(event, FinishEvent):
                    for d in assembler.finish(event):
                        yield "delta", delta(d)
                elif isinstance(event, DoneEvent):
                    results = assembler.results()
                    traces.finished(span, gen, event, traces.reasons([r.finish for r in results]), results)
                    yield "complete", pb.StreamComplete(
                        choices=[pb.ChoiceFinish(index=r.index, **convert.finish_fields(r.finish),
                                                 tool_calls=[convert.tool_call_to_proto(t) for t in r.tool_calls])
                                 for r in assembler.results()],
                        usage=convert.usage_to_proto(event), timings=convert.timings_to_proto(event),
                        model=model)

        async for kind, message in rpc.in_band(events(), "chat", gen.request_id):
            yield pb.ChatStreamResponse(request_id=gen.request_id, **{kind: message})

    async def Cancel(self, request, context):
        return pb.CancelResponse(request_id=rpc.request_id(request),
                                 cancelled=self._models.cancel(request.target_request_id))

    # -- models -----------------------------------------------------------------------------

    async def ListModels(self, request, context):
        models = self._models.models()
        wanted = convert.model_kind_from_proto(request.kind)
        if wanted is not None:
            models = [m for m in models if m.is_adapter == wanted]
        return pb.ListModelsResponse(request_id=rpc.request_id(request),
                                     models=[convert.model_to_proto(m) for m in models],
                                     default_model=self._inference.base.id)

    async def GetModel(self, request, context):
        return pb.GetModelResponse(request_id=rpc.request_id(request),
                                   model=convert.model_to_proto(self._models.get_model(request.model)))

    async def LoadAdapter(self, request, context):
        if request.WhichOneof("source") is None:
            raise InvalidArgument.for_field("path", "give the adapter's directory or a fine-tune artifact_id")
        info = await asyncio.to_thread(self._models.load_adapter, request.adapter_name, request.base_model,
                                       path=request.path, artifact_id=request.artifact_id)
        return pb.LoadAdapterResponse(request_id=rpc.request_id(request), model=convert.model_to_proto(info))

    async def UnloadAdapter(self, request, context):
        info = self._models.unload_adapter(request.adapter_name)
        return pb.UnloadAdapterResponse(request_id=rpc.request_id(request), model=convert.model_to_proto(info))

    async def LoadModel(self, request, context):
        if request.WhichOneof("source") is None:
            raise InvalidArgument.for_field("path", "give the model's directory or a fine-tune artifact_id")
        info = await self._models.load_model(request.model_id, request.base_model, path=request.path,
                                             artifact_id=request.artifact_id)
        return pb.LoadModelResponse(request_id=rpc.request_id(request), model=convert.model_to_proto(info))

    async def UnloadModel(self, request, context):
        info = await self._models.unload_model(request.model_id)
        return pb.UnloadModelResponse(request_id=rpc.request_id(request), model=convert.model_to_proto(info))

    async def GetInfo(self, request, context):
        s = self._inference.settings
        return pb.GetInfoResponse(
            request_id=rpc.request_id(request), engine=self._inference.backend.name, engine_version="",
            default_model=convert.model_to_proto(self._inference.base), max_batch_size=s.max_batch_size,
            max_message_bytes=0, max_loaded_adapters=s.max_loaded_adapters, max_stop_sequences=s.max_stop_sequences,
            max_top_logprobs=s.max_top_logprobs, max_samples=s.max_samples, max_loaded_models=s.max_loaded_models,
        )

    async def GenerateImages(self, request, context):
        model = self._models.image_model(request.model)
        made = await asyncio.to_thread(model.generate, request.prompt, n=request.n or 1, size=request.size,
                                       steps=request.steps, seed=request.seed if request.HasField("seed") else None)
        return pb.GenerateImagesResponse(
            request_id=rpc.request_id(request), model=model.id, timings=rpc.timings(total_s=made.seconds),
            images=[pb.GeneratedImage(png=png, label=label) for png, label in zip(made.images, made.labels, strict=True)])


def service_spec(models: Deferred[ModelRegistry]) -> ServiceSpec:
    servicer = InferenceServicer(models)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_InferenceServiceServicer_to_server(servicer, server))
