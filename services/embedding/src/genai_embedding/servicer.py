"""gRPC adapter for the embedding domain: proto in, domain call, proto out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from genai.embedding.v1 import embedding_service_pb2 as pb
from genai.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from genai_core import rpc, spans
from genai_core.deferred import Deferred
from genai_core.errors import GenAIError, InvalidArgument
from genai_core.server import ServiceSpec

from genai_embedding.embedder import Embedder, EmbedOptions, EmbedResult, Kind, Truncation
from genai_embedding.loaded import LoadedKind

logger = logging.getLogger(__name__)


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
STREAM_IN_FLIGHT = 8  # stream batches being embedded at once; reading more waits (backpressure)


_TRUNCATION = {
    pb.TRUNCATION_POLICY_UNSPECIFIED: Truncation.END,
    pb.TRUNCATION_POLICY_TRUNCATE_END: Truncation.END,
    pb.TRUNCATION_POLICY_TRUNCATE_START: Truncation.START,
    pb.TRUNCATION_POLICY_REJECT: Truncation.REJECT,
}
_KIND = {
    pb.EMBEDDING_KIND_UNSPECIFIED: Kind.DENSE,
    pb.EMBEDDING_KIND_DENSE: Kind.DENSE,
    pb.EMBEDDING_KIND_SPARSE: Kind.SPARSE,
    pb.EMBEDDING_KIND_BOTH: Kind.BOTH,
}


def options_from_proto(o: pb.EmbedOptions) -> EmbedOptions:
    if o.truncation not in _TRUNCATION:
        raise InvalidArgument.for_field("options.truncation", f"unknown truncation policy {o.truncation}")
    if o.kind not in _KIND:
        raise InvalidArgument.for_field("options.kind", f"unknown embedding kind {o.kind}")
    return EmbedOptions(
        normalize=o.normalize if o.HasField("normalize") else True,
        truncation=_TRUNCATION[o.truncation],
        dimensions=o.dimensions if o.HasField("dimensions") else None,
        kind=_KIND[o.kind],
        prompt_name=o.prompt_name,
        sparse_model=o.sparse_model,
    )


def _embeddings(result: EmbedResult) -> list[pb.Embedding]:
    out = []
    for e in result.embeddings:
        item = pb.Embedding(index=e.index, token_count=e.token_count, truncated=e.truncated)
        if e.dense is not None:
            item.dense.values.extend(e.dense.tolist())
        if e.sparse is not None:
            item.sparse.indices.extend(e.sparse.indices)
            item.sparse.values.extend(e.sparse.values)
        out.append(item)
    return out


def _traced(span: spans.GenAISpan, request, result: EmbedResult) -> None:
    """The RPC's span as the embedding call it is (genai_core.spans); the texts only as captured content."""
    first = result.embeddings[0] if result.embeddings else None
    dims = len(first.dense) if first is not None and first.dense is not None else None
    texts = list(request.texts.texts) if request.WhichOneof("input") == "texts" and span.captures else []
    span.request(model=result.model).embeddings(texts, dims, count=len(result.embeddings)).usage(
        result.prompt_tokens).attributes(**{"genai.embedding.queue_seconds": result.queue_s})


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, embedder: Deferred[Embedder], max_message_bytes: int = 0) -> None:
        self._deferred = embedder
        self._max_message_bytes = max_message_bytes

    @property
    def _embedder(self) -> Embedder:
        return self._deferred.get()

    async def _embed(self, request) -> EmbedResult:
        kind = request.WhichOneof("input")
        if kind is None:
            raise InvalidArgument.for_field("texts", "send the inputs as texts or token_inputs")
        options = options_from_proto(request.options)
        if kind == "texts":
            return await self._embedder.embed(request.model, texts=list(request.texts.texts), options=options)
        sequences = [list(s.ids) for s in request.token_inputs.sequences]
        return await self._embedder.embed(request.model, token_inputs=sequences, options=options)

    async def Embed(self, request, context):
        span = spans.current(spans.Operation.EMBEDDINGS)
        result = await self._embed(request)
        _traced(span, request, result)
        return pb.EmbedResponse(
            request_id=rpc.request_id(request), model=result.model, embeddings=_embeddings(result),
            usage=rpc.usage(result.prompt_tokens), timings=rpc.timings(result.total_s, queue_s=result.queue_s),
        )

    async def _stream_batch(self, request) -> pb.EmbedStreamResponse:
        rid = rpc.request_id(request)
        try:
            result = await self._embed(request)
        except Exception as exc:  # noqa: BLE001 - a failed batch is reported in-band; the stream goes on
            if not isinstance(exc, GenAIError):
                logger.exception("embedding stream batch %s failed", rid)
            return pb.EmbedStreamResponse(request_id=rid, model=request.model, error=rpc.error_detail(exc, "internal error while embedding"))
        return pb.EmbedStreamResponse(
            request_id=rid, model=result.model, embeddings=_embeddings(result), usage=rpc.usage(result.prompt_tokens)
        )

    async def EmbedStream(self, request_iterator, context) -> AsyncIterator[pb.EmbedStreamResponse]:
        self._deferred.get()  # UNAVAILABLE for the whole stream while loading
        spans.current(spans.Operation.EMBEDDINGS).request(stream=True)
        out: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
        done = object()

        async def one(request) -> None:
            try:
                await out.put(await self._stream_batch(request))
            finally:
                slots.release()

        async def read() -> None:
            tasks = []
            try:
                async for request in request_iterator:
                    await slots.acquire()
                    tasks.append(asyncio.create_task(one(request)))
                await asyncio.gather(*tasks)
                await out.put(done)
            except BaseException as exc:
                for task in tasks:
                    task.cancel()
                await out.put(exc)
                raise

        reader = asyncio.create_task(read())
        try:
            while (item := await out.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def Rerank(self, request, context):
        if request.truncation not in _TRUNCATION:
            raise InvalidArgument.for_field("truncation", f"unknown truncation policy {request.truncation}")
        top_n = request.top_n if request.HasField("top_n") else None
        span = spans.current(spans.Operation.RERANK).request(top_k=top_n).query(request.query)
        if span.captures:
            span.input_documents([spans.Document(str(i), content=p) for i, p in enumerate(request.passages)])
        result = await self._embedder.rerank(
            request.model, request.query, list(request.passages), top_n=top_n, return_text=request.return_text,
            truncation=_TRUNCATION[request.truncation], raw_scores=request.raw_scores,
        )
        span.request(model=result.model).usage(result.prompt_tokens).documents(
            [spans.Document(str(r.index), r.score) for r in result.results])
        return pb.RerankResponse(
            request_id=rpc.request_id(request), model=result.model,
            results=[pb.RerankResult(index=r.index, score=r.score, text=r.text) for r in result.results],
            usage=rpc.usage(result.prompt_tokens), timings=rpc.timings(result.total_s, queue_s=result.queue_s),
        )

    async def GetInfo(self, request, context):
        info = self._embedder.info(request.model)
        return pb.GetInfoResponse(
            request_id=rpc.request_id(request), model=info.model, revision=info.revision,
            model_type=pb.MODEL_TYPE_RERANKER if info.reranker else pb.MODEL_TYPE_EMBEDDING, dimensions=info.dimensions,
            sparse_dimensions=info.sparse_dimensions, max_input_tokens=info.max_input_tokens,
            max_batch_size=info.max_batch_size, max_batch_tokens=info.max_batch_tokens,
            max_message_bytes=self._max_message_bytes, pooling=pb.POOLING_MEAN,
            engine=info.engine, engine_version=info.engine_version, models=info.models,
            sparse_models=info.sparse_models,
        )

    async def LoadModel(self, request, context):
        info = await self._embedder.load_model(request.model_id, request.artifact_id)
        return pb.LoadModelResponse(request_id=rpc.request_id(request), model_id=info.id, model_type=_LOADED[info.kind])

    async def UnloadModel(self, request, context):
        info = await self._embedder.unload_model(request.model_id)
        return pb.UnloadModelResponse(request_id=rpc.request_id(request), model_id=info.id, model_type=_LOADED[info.kind])


_LOADED = {LoadedKind.ENCODER: pb.MODEL_TYPE_EMBEDDING, LoadedKind.CROSS_ENCODER: pb.MODEL_TYPE_RERANKER}


def service_spec(embedder: Deferred[Embedder], max_message_bytes: int = 0) -> ServiceSpec:
    servicer = EmbeddingServicer(embedder, max_message_bytes)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_EmbeddingServiceServicer_to_server(servicer, server))

__all__ = ["EmbeddingServicer", "options_from_proto", "service_spec"]
