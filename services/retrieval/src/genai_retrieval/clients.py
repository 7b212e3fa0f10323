"""The ports of ``ports.py`` over the embedding, inference and tokenizer services.

Each client wraps ``genai_core.downstream.Downstream.client(name)`` (traced channels, deadlines, retries of
UNAVAILABLE, failures as our own errors naming the service) and turns domain values into the callee's
protobuf and back. Nothing else in the service sees another service's messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from genai.embedding.v1 import embedding_service_pb2 as epb
from genai.inference.v1 import inference_service_pb2 as ipb
from genai.tokenizer.v1 import tokenizer_service_pb2 as tpb
from genai.type.v1 import usage_pb2
from genai_core.downstream import Downstream

from genai_retrieval.types import (
    ChatDone,
    ChatEvent,
    ChatReply,
    ChatRequest,
    Embedded,
    EmbeddingModel,
    Failure,
    Reranked,
    SparseVector,
    TextDelta,
    Usage,
)

# (dense, sparse) -> the embedding service's kind of vectors.
_KINDS = {
    (True, False): epb.EMBEDDING_KIND_DENSE,
    (False, True): epb.EMBEDDING_KIND_SPARSE,
    (True, True): epb.EMBEDDING_KIND_BOTH,
}


def _usage(usage: usage_pb2.Usage) -> Usage:
    return Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_prompt_tokens)


class EmbeddingClient:
    """``ports.Embeddings`` over the embedding service."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    async def model(self, name: str) -> EmbeddingModel:
        info = await self._downstream.client("embedding").GetInfo(epb.GetInfoRequest(model=name))
        return EmbeddingModel(info.model, info.revision, info.dimensions, tuple(info.supported_dimensions))

    async def embed(
        self, model: str, texts: Sequence[str], *, dense: bool, sparse: bool, sparse_model: str = "",
        dimensions: int | None = None,
    ) -> Embedded:
        options = epb.EmbedOptions(kind=_KINDS[(dense, sparse)], sparse_model=sparse_model)
        if dimensions is not None:
            options.dimensions = dimensions
        reply = await self._downstream.client("embedding").Embed(
            epb.EmbedRequest(model=model, texts=epb.TextInputs(texts=list(texts)), options=options))
        return Embedded(
            dense=[list(e.dense.values) for e in reply.embeddings] if dense else [],
            sparse=[SparseVector(list(e.sparse.indices), list(e.sparse.values)) for e in reply.embeddings]
            if sparse else [],
            prompt_tokens=reply.usage.prompt_tokens,
        )

    async def rerank(self, model: str, query: str, passages: Sequence[str]) -> Reranked:
        reply = await self._downstream.client("embedding").Rerank(
            epb.RerankRequest(model=model, query=query, passages=list(passages)))
        return Reranked([(r.index, r.score) for r in reply.results], reply.usage.prompt_tokens)


def _sampling(request: ChatRequest) -> ipb.SamplingParams:
    out = ipb.SamplingParams(max_new_tokens=request.max_new_tokens, temperature=request.temperature)
    if request.top_p is not None:
        out.top_p = request.top_p
    return out


def _messages(request: ChatRequest) -> list[ipb.ChatMessage]:
    return [ipb.ChatMessage(role=m.role, content=m.content) for m in request.messages]


class ChatClient:
    """``ports.Chat`` over the inference service."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    async def chat(self, request: ChatRequest) -> ChatReply:
        reply = await self._downstream.client("inference").Chat(ipb.ChatRequest(
            model=request.model, messages=_messages(request), sampling=_sampling(request)))
        choice = reply.choices[0] if reply.choices else ipb.ChatChoice()
        return ChatReply(choice.message.content, _usage(reply.usage), reply.model,
                         choice.finish_reason == ipb.FINISH_REASON_LENGTH)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        events = self._downstream.client("inference").ChatStream(ipb.ChatStreamRequest(
            model=request.model, messages=_messages(request), sampling=_sampling(request)))
        async for event in events:
            kind = event.WhichOneof("event")
            if kind == "delta":
                yield TextDelta(event.delta.content)
            elif kind == "complete":
                c = event.complete
                finish = c.choices[0].finish_reason if c.choices else ipb.FINISH_REASON_STOP
                yield ChatDone(_usage(c.usage), c.model, finish == ipb.FINISH_REASON_LENGTH)
            elif kind == "error":
                yield Failure(event.error.code, event.error.reason, event.error.message)


class PackingClient:
    """``ports.ContextPacker`` over the tokenizer service."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    async def pack(
        self, tokenizer: str, token_budget: int, system_prompt: str, question: str, passages: Sequence[str]
    ) -> list[int]:
        packed = await self._downstream.client("tokenizer").PackContext(tpb.PackContextRequest(
            tokenizer=tokenizer, token_budget=token_budget, system_prompt=system_prompt, question=question,
            chunks=list(passages)))
        return sorted(packed.selected_indices)
