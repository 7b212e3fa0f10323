"""The ports over the suite's services (``genai_core.downstream``): the model under test through the inference
and tokenizer services, collections through retrieval, vectors through embedding. Endpoint models (any
OpenAI-compatible server) come from ``endpoint``.

Scoring sends each sequence as token ids with ``max_new_tokens=0``, ``prompt_logprobs`` and
``prompt_logprobs_start`` at the continuation: the service prefills the context (once per question, through
its prefix cache) without its vocabulary-wide logits, returns the continuation's log-probabilities (with the
most likely token at each position when greediness is asked) and generates nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from genai.embedding.v1 import embedding_service_pb2 as embedding_pb
from genai.inference.v1 import inference_service_pb2 as inference_pb
from genai.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from genai.tokenizer.v1 import tokenizer_service_pb2 as tokenizer_pb
from genai_core.downstream import Downstream
from genai_core.errors import NotFound, ResourceExhausted
from genai_core.settings import DownstreamSettings
from opentelemetry.sdk.trace import TracerProvider

from genai_evaluation.endpoint import EndpointModel
from genai_evaluation.ports import (
    CorpusDocument,
    Embeddings,
    Generated,
    GenerateParams,
    Hit,
    LanguageModel,
    ModelInfo,
    Retriever,
    Scored,
)
from genai_evaluation.types import ModelRef, SearchMode, Usage

TOKENIZE_BATCH = 256
SEARCH_MODES = {SearchMode.DENSE: retrieval_pb.SEARCH_MODE_DENSE, SearchMode.SPARSE: retrieval_pb.SEARCH_MODE_SPARSE,
                SearchMode.HYBRID: retrieval_pb.SEARCH_MODE_HYBRID}


async def _patiently(call, attempts: int = 8):
    """``call()``, retried with backoff while the service's queue is full (other runs share it)."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            return await call()
        except ResourceExhausted:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
    raise AssertionError("unreachable")


def _usage(u) -> Usage:
    return Usage(u.prompt_tokens, u.completion_tokens)


class InferenceModel:
    """A model (or adapter) of the inference service, tokenized by the tokenizer service."""

    def __init__(self, downstream: Downstream, model: str, tokenizer: str) -> None:
        self._downstream = downstream
        self._model = model
        self._tokenizer = tokenizer
        self._info: ModelInfo | None = None
        self._info_lock = asyncio.Lock()

    @property
    def _inference(self):
        return self._downstream.client("inference")

    @property
    def _tokens(self):
        return self._downstream.client("tokenizer")

    async def check(self) -> None:
        if not self._model:
            return
        try:
            await self._inference.GetModel(inference_pb.GetModelRequest(model=self._model))
        except NotFound:
            raise NotFound(f"the inference service has no model or adapter {self._model!r}; GET /v1/models lists "
                           "them", resource_type="model", resource_name=self._model) from None

    async def info(self) -> ModelInfo:
        async with self._info_lock:
            if self._info is None:
                tok, model = await asyncio.gather(
                    self._tokens.GetTokenizer(tokenizer_pb.GetTokenizerRequest(tokenizer=self._tokenizer)),
                    self._inference.GetModel(inference_pb.GetModelRequest(model=self._model)))
                roles = {t.role.lower(): t.id for t in tok.tokenizer.special_tokens}
                prefix = roles.get("bos", roles.get("eos", 0))
                self._info = ModelInfo(prefix_token_id=prefix, max_length=model.model.context_length or 2048)
            return self._info

    async def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = []
        for at in range(0, len(texts), TOKENIZE_BATCH):
            reply = await self._tokens.Tokenize(tokenizer_pb.TokenizeRequest(
                tokenizer=self._tokenizer, texts=list(texts[at: at + TOKENIZE_BATCH]), add_special_tokens=False))
            out += [list(e.ids) for e in reply.encodings]
        return out

    async def score(self, ids: Sequence[int], start: int, greedy: bool = False) -> Scored:
        # The most likely alternative per position only when greediness is asked for: it costs a top-k
        # over the vocabulary at every prompt position.
        request = inference_pb.GenerateRequest(
            model=self._model, token_ids=inference_pb.TokenIds(ids=list(ids)),
            sampling=inference_pb.SamplingParams(max_new_tokens=0, temperature=0.0, prompt_logprobs=int(greedy),
                                                 prompt_logprobs_start=start))
        reply = await _patiently(lambda: self._inference.Generate(request))
        scored = reply.prompt_logprobs  # positions start… only: the context is prefilled, not scored
        is_greedy = greedy and all(t.top_logprobs and t.logprob >= t.top_logprobs[0].logprob - 1e-6 for t in scored)
        return Scored(tuple(t.logprob for t in scored), is_greedy, Usage(len(ids), 0))

    async def generate(self, prompt: str, params: GenerateParams) -> Generated:
        sampling = inference_pb.SamplingParams(max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                               stop_sequences=list(params.stop)[:8], n=params.n)
        if params.top_p is not None:
            sampling.top_p = params.top_p
        if params.seed is not None:
            sampling.seed = params.seed
        request = inference_pb.GenerateRequest(model=self._model, text=prompt, sampling=sampling)
        reply = await _patiently(lambda: self._inference.Generate(request))
        texts = tuple(c.text for c in sorted(reply.completions, key=lambda c: c.index))
        return Generated(texts, _usage(reply.usage))

    async def chat_prompt(self, user_text: str) -> str:
        reply = await self._tokens.RenderChatTemplate(tokenizer_pb.RenderChatTemplateRequest(
            tokenizer=self._tokenizer, messages=[tokenizer_pb.ChatMessage(role="user", content=user_text)],
            add_generation_prompt=True))
        return reply.text


class RetrievalClient:
    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream

    @property
    def _client(self):
        return self._downstream.client("retrieval")

    async def document_count(self, tenant: str, collection: str) -> int | None:
        try:
            reply = await self._client.GetCollection(retrieval_pb.GetCollectionRequest(tenant=tenant,
                                                                                       collection=collection))
        except NotFound:
            return None
        return reply.collection.document_count

    async def build(self, tenant: str, collection: str, documents: Sequence[CorpusDocument]) -> None:
        if await self.document_count(tenant, collection) is not None:
            await self._client.DeleteCollection(retrieval_pb.DeleteCollectionRequest(tenant=tenant,
                                                                                     collection=collection))
        await self._client.CreateCollection(retrieval_pb.CreateCollectionRequest(
            tenant=tenant, name=collection, sparse_enabled=True, description="built by the evaluation service"))
        for at in range(0, len(documents), 64):
            batch = documents[at: at + 64]
            await self._client.IngestDocuments(retrieval_pb.IngestDocumentsRequest(
                tenant=tenant, collection=collection,
                documents=[retrieval_pb.DocumentInput(document_id=d.id, mime_type="text/plain", text=d.text,
                                                      title=d.title) for d in batch]))

    async def search(self, tenant: str, collection: str, query: str, mode: SearchMode, top_k: int,
                     rerank: bool = False) -> tuple[list[Hit], Usage]:
        reply = await self._client.Search(retrieval_pb.SearchRequest(
            tenant=tenant, collection=collection, query=query,
            options=retrieval_pb.SearchOptions(top_k=top_k, mode=SEARCH_MODES[mode],
                                               rerank=retrieval_pb.RerankOptions(enabled=rerank))))
        hits = [Hit(r.chunk.chunk_id, r.chunk.document_id, r.chunk.text, r.score) for r in reply.results]
        return hits, _usage(reply.usage)


class EmbeddingClient:
    def __init__(self, downstream: Downstream, model: str) -> None:
        self._downstream = downstream
        self._model = model

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reply = await self._downstream.client("embedding").Embed(embedding_pb.EmbedRequest(
            model=self._model, texts=embedding_pb.TextInputs(texts=list(texts))))
        return [list(e.dense.values) for e in sorted(reply.embeddings, key=lambda e: e.index)]


class ServiceBackends:
    """``Backends`` over the suite's services, opened on the calling event loop."""

    def __init__(self, settings: DownstreamSettings, *, tokenizer: str, embedding_model: str,
                 endpoint_timeout: float, tracer_provider: TracerProvider | None = None) -> None:
        self._downstream = Downstream(settings, caller_prefix="GENAI_EVALUATION_", tracer_provider=tracer_provider)
        self._tokenizer = tokenizer
        self._embedding_model = embedding_model
        self._endpoint_timeout = endpoint_timeout
        self._endpoints: list[EndpointModel] = []

    def model(self, ref: ModelRef) -> LanguageModel:
        if ref.endpoint is not None:
            model = EndpointModel(ref.endpoint, timeout=self._endpoint_timeout)
            self._endpoints.append(model)
            return model
        return InferenceModel(self._downstream, ref.inference_model, self._tokenizer)

    def retriever(self) -> Retriever:
        return RetrievalClient(self._downstream)

    def embeddings(self) -> Embeddings:
        return EmbeddingClient(self._downstream, self._embedding_model)

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.close()
        await self._downstream.close()
