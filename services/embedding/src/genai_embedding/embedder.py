"""The embedding domain: validate, tokenize with an explicit truncation policy, embed, rerank. No grpc here.

    embedder = Embedder.load(EmbeddingSettings())
    result = await embedder.embed("", texts=["Paris is the capital of France."], options=EmbedOptions())
    result.embeddings[0].dense.shape        # (384,), unit length

Rerank with the default model uses the bi-encoder: the cosine of the query's and each passage's normalised
embeddings, in [-1, 1] (``raw_scores`` changes nothing: a cosine is already the score). Models loaded at run
time (``loaded``: encoders and cross-encoders from the fine-tune service) are named by ``model``; a
cross-encoder's Rerank scores are the sigmoid of its logits, or the logits with ``raw_scores``.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from genai_core.errors import InvalidArgument, NotFound
from genai_sparse.bm25 import (
    DEFAULT_SPARSE_MODEL,
    SPARSE_ALIASES,
    SPARSE_MODELS,
    EnglishAnalyzer,
    SparseVector,
    WordPieceAnalyzer,
    bm25_weights,
)

from genai_embedding import engines
from genai_embedding.batcher import Batcher
from genai_embedding.loaded import LoadedInfo, LoadedKind, LoadedModels
from genai_embedding.metrics import EmbeddingMetrics
from genai_embedding.model import ModelSource, resolve
from genai_embedding.pooling import l2_normalize
from genai_embedding.settings import EmbeddingSettings


class Truncation(enum.Enum):
    END = "end"
    START = "start"
    REJECT = "reject"


class Kind(enum.Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    BOTH = "both"


@dataclass(frozen=True)
class EmbedOptions:
    normalize: bool = True
    truncation: Truncation = Truncation.END
    dimensions: int | None = None
    kind: Kind = Kind.DENSE
    prompt_name: str = ""
    sparse_model: str = ""  # empty: DEFAULT_SPARSE_MODEL


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    truncated: bool


@dataclass(frozen=True)
class Embedding:
    index: int
    dense: np.ndarray | None
    sparse: SparseVector | None
    token_count: int
    truncated: bool


@dataclass(frozen=True)
class EmbedResult:
    model: str
    embeddings: list[Embedding]
    prompt_tokens: int
    queue_s: float
    total_s: float


@dataclass(frozen=True)
class Scored:
    index: int
    score: float
    text: str


@dataclass(frozen=True)
class RerankResult:
    model: str
    results: list[Scored]
    prompt_tokens: int
    queue_s: float
    total_s: float


@dataclass(frozen=True)
class Info:
    model: str
    revision: str
    dimensions: int
    sparse_dimensions: int
    max_input_tokens: int
    max_batch_size: int  # inputs per request
    max_batch_tokens: int
    engine: str
    engine_version: str
    models: list[str]
    sparse_models: list[str]  # the default first
    reranker: bool = False  # a cross-encoder loaded with LoadModel: Rerank only


def truncate(ids: list[int], limit: int, policy: Truncation, field: str, *, special_ends: bool) -> Encoded:
    """Apply ``policy`` to one input of more than ``limit`` tokens.

    ``special_ends``: the first and last ids are [CLS]/[SEP] added by the tokenizer and are kept.
    """
    if len(ids) <= limit:
        return Encoded(ids, False)
    if policy is Truncation.REJECT:
        raise InvalidArgument.for_field(
            field, f"has {len(ids)} tokens, more than the model's max_input_tokens {limit}; "
            "shorten it or ask for truncation"
        )
    if special_ends:
        body = ids[1 : limit - 1] if policy is Truncation.END else ids[len(ids) - limit + 1 : -1]
        return Encoded([ids[0], *body, ids[-1]], True)
    return Encoded(ids[:limit] if policy is Truncation.END else ids[-limit:], True)


class Embedder:
    def __init__(
        self, source: ModelSource, engine, tokenizer, settings: EmbeddingSettings,  # noqa: ANN001
        metrics: EmbeddingMetrics | None = None,
    ) -> None:
        self.source = source
        self.engine = engine
        self.settings = settings
        self.loaded = LoadedModels(settings.artifacts_dir, max_models=settings.max_loaded_models,
                                   threads=settings.threads, max_input_tokens=settings.max_input_tokens,
                                   batch_size=settings.max_batch_size)
        self.max_input_tokens = min(settings.max_input_tokens, source.max_seq_length)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        special_ids = {
            tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]") if tokenizer.token_to_id(t) is not None
        }
        self._analyzers = {"english": EnglishAnalyzer(), "wordpiece": WordPieceAnalyzer(special_ids, source.vocab_size)}
        pad = tokenizer.token_to_id("[PAD]")
        self.batcher = Batcher(
            engine.forward, dimension=source.dimension, max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
            pad_id=pad if pad is not None else 0, metrics=metrics,
        )

    @classmethod
    def load(cls, settings: EmbeddingSettings, metrics: EmbeddingMetrics | None = None) -> Embedder:
        """Resolve the weights, build the configured engine (exporting ONNX once if needed) and the tokenizer."""
        from tokenizers import Tokenizer

        source = resolve(settings.model, settings.model_path)
        engine = engines.build(source, settings)
        return cls(source, engine, Tokenizer.from_file(str(source.directory / "tokenizer.json")), settings, metrics)

    async def warmup(self) -> None:
        """One real forward through the batcher, so the first request pays no lazy initialisation."""
        await self.embed("", texts=["warm up the embedding model"], options=EmbedOptions(kind=Kind.BOTH))

    async def close(self) -> None:
        await self.batcher.close()

    # -- validation and tokenization --------------------------------------------------------

    def check_model(self, model: str) -> str:
        if model and model not in self.source.aliases:
            raise NotFound(
                f"model {model!r} is not served here; available: {self.source.id}",
                resource_type="model", resource_name=model,
            )
        return self.source.id

    def _check_count(self, n: int, field: str, what: str) -> None:
        if n == 0:
            raise InvalidArgument.for_field(field, f"send at least one {what}")
        if n > self.settings.max_request_inputs:
            raise InvalidArgument.for_field(
                field, f"{n} inputs is more than max_batch_size {self.settings.max_request_inputs}; split the request"
            )

    def encode_texts(self, texts: Sequence[str], policy: Truncation, field: str) -> list[Encoded]:
        for i, text in enumerate(texts):
            if not text:
                raise InvalidArgument.for_field(f"{field}[{i}]", "must not be empty")
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [
            truncate(e.ids, self.max_input_tokens, policy, f"{field}[{i}]", special_ends=True)
            for i, e in enumerate(encodings)
        ]

    def encode_ids(self, sequences: Sequence[Sequence[int]], policy: Truncation, field: str) -> list[Encoded]:
        vocab = self.source.vocab_size
        out = []
        for i, ids in enumerate(sequences):
            if not ids:
                raise InvalidArgument.for_field(f"{field}[{i}]", "must not be empty")
            if max(ids) >= vocab:
                # Most often ids of another tokenizer: LangChain's OpenAIEmbeddings sends tiktoken ids by default.
                raise InvalidArgument.for_field(
                    f"{field}[{i}]",
                    f"token id {max(ids)} is not below the vocabulary size {vocab} of this model's tokenizer; ids of "
                    "another tokenizer (such as the tiktoken ids LangChain's OpenAIEmbeddings sends unless "
                    "check_embedding_ctx_length=False) cannot be embedded: send the text instead")
            out.append(truncate(list(ids), self.max_input_tokens, policy, f"{field}[{i}]", special_ends=False))
        return out

    def _check_options(self, options: EmbedOptions) -> None:
        dim = self.source.dimension
        if options.dimensions is not None and options.dimensions != dim:
            raise InvalidArgument.for_field(
                "options.dimensions",
                f"{self.source.id} supports only its full {dim} dimensions (no Matryoshka reduction)",
            )
        if options.prompt_name:
            raise InvalidArgument.for_field("options.prompt_name", f"{self.source.id} defines no prompts")

    def analyzer(self, sparse_model: str):  # noqa: ANN201
        model = sparse_model or DEFAULT_SPARSE_MODEL
        name = SPARSE_MODELS.get(SPARSE_ALIASES.get(model, model))
        if name is None:
            raise InvalidArgument.for_field(
                "options.sparse_model", f"unknown sparse model {sparse_model!r}; available: {', '.join(SPARSE_MODELS)}"
            )
        return self._analyzers[name]

    def sparse(self, analyzer, text: str, ids: Sequence[int]) -> SparseVector:  # noqa: ANN001
        s = self.settings
        return bm25_weights(analyzer.terms(text, ids), k1=s.sparse_k1, b=s.sparse_b, avgdl=s.sparse_avg_doc_tokens)

    # -- the operations ---------------------------------------------------------------------

    # -- models loaded at run time ------------------------------------------------------------

    async def load_model(self, model_id: str, artifact_id: str) -> LoadedInfo:
        return await asyncio.to_thread(self.loaded.load, model_id, artifact_id, self.source.aliases)

    async def unload_model(self, model_id: str) -> LoadedInfo:
        return self.loaded.unload(model_id)

    async def _embed_loaded(self, model: str, texts: Sequence[str] | None, options: EmbedOptions) -> EmbedResult:
        started = time.perf_counter()
        if texts is None:
            raise InvalidArgument.for_field("token_inputs", f"'{model}' takes texts; it has its own tokenizer")
        self._check_count(len(texts), "texts", "text")
        if options.kind is not Kind.DENSE or options.dimensions is not None or options.prompt_name:
            raise InvalidArgument.for_field("options", f"'{model}' gives dense vectors of its full size only")
        for i, text in enumerate(texts):
            if not text:
                raise InvalidArgument.for_field(f"texts[{i}]", "must not be empty")
        vectors, counts = await asyncio.to_thread(self.loaded.get(model).embed, list(texts),
                                                  normalize=options.normalize,
                                                  truncate=options.truncation is not Truncation.REJECT)
        embeddings = [Embedding(i, vectors[i], None, counts[i], False) for i in range(len(texts))]
        return EmbedResult(model, embeddings, sum(counts), 0.0, time.perf_counter() - started)

    async def embed(
        self, model: str, *, texts: Sequence[str] | None = None, token_inputs: Sequence[Sequence[int]] | None = None,
        options: EmbedOptions,
    ) -> EmbedResult:
        """Embeddings of ``texts`` (tokenized here) or ``token_inputs`` (used as they are), in input order."""
        if model and model in self.loaded:
            return await self._embed_loaded(model, texts, options)
        started = time.perf_counter()
        model_id = self.check_model(model)
        if texts is not None:
            self._check_count(len(texts), "texts", "text")
            self._check_options(options)
            encoded = self.encode_texts(texts, options.truncation, "texts")
        else:
            token_inputs = token_inputs or []
            self._check_count(len(token_inputs), "token_inputs", "token sequence")
            self._check_options(options)
            encoded = self.encode_ids(token_inputs, options.truncation, "token_inputs")
        analyzer = self.analyzer(options.sparse_model) if options.kind in (Kind.SPARSE, Kind.BOTH) else None
        if texts is None and isinstance(analyzer, EnglishAnalyzer):
            raise InvalidArgument.for_field(
                "options.sparse_model", f"{options.sparse_model or DEFAULT_SPARSE_MODEL} analyses text; token inputs "
                "need sparse_model bm25-wordpiece"
            )
        dense, queue_s = None, 0.0
        if options.kind in (Kind.DENSE, Kind.BOTH):
            dense, queue_s = await self.batcher.embed([e.ids for e in encoded])
            if options.normalize:
                dense = l2_normalize(dense)
        embeddings = [
            Embedding(
                index=i,
                dense=dense[i] if dense is not None else None,
                sparse=self.sparse(analyzer, texts[i] if texts is not None else "", e.ids) if analyzer else None,
                token_count=len(e.ids),
                truncated=e.truncated,
            )
            for i, e in enumerate(encoded)
        ]
        return EmbedResult(
            model_id, embeddings, sum(len(e.ids) for e in encoded), queue_s, time.perf_counter() - started
        )

    async def rerank(
        self, model: str, query: str, passages: Sequence[str], *, top_n: int | None = None,
        return_text: bool = False, truncation: Truncation = Truncation.END, raw_scores: bool = False,
    ) -> RerankResult:
        """Passages scored by cosine similarity to ``query`` (bi-encoder), best first; ties keep input order. A
        cross-encoder loaded with LoadModel scores each pair jointly instead (sigmoid of its logit)."""
        if model and model in self.loaded:
            return await self._rerank_loaded(model, query, passages, top_n=top_n, return_text=return_text,
                                             truncation=truncation, raw_scores=raw_scores)
        started = time.perf_counter()
        model_id = self.check_model(model)
        if not query:
            raise InvalidArgument.for_field("query", "must not be empty")
        self._check_count(len(passages), "passages", "passage")
        if top_n is not None and top_n < 1:
            raise InvalidArgument.for_field("top_n", "must be at least 1 (leave it unset to return every passage)")
        query_ids = self._tokenizer.encode(query, add_special_tokens=True).ids
        encoded = [truncate(query_ids, self.max_input_tokens, truncation, "query", special_ends=True)]
        encoded += self.encode_texts(passages, truncation, "passages")
        vectors, queue_s = await self.batcher.embed([e.ids for e in encoded])
        vectors = l2_normalize(vectors)
        scores = vectors[1:] @ vectors[0]
        order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))[: top_n or len(passages)]
        results = [Scored(i, float(scores[i]), passages[i] if return_text else "") for i in order]
        return RerankResult(
            model_id, results, sum(len(e.ids) for e in encoded), queue_s, time.perf_counter() - started
        )

    async def _rerank_loaded(self, model: str, query: str, passages: Sequence[str], *, top_n: int | None,
                             return_text: bool, truncation: Truncation, raw_scores: bool) -> RerankResult:
        started = time.perf_counter()
        if not query:
            raise InvalidArgument.for_field("query", "must not be empty")
        self._check_count(len(passages), "passages", "passage")
        if top_n is not None and top_n < 1:
            raise InvalidArgument.for_field("top_n", "must be at least 1 (leave it unset to return every passage)")
        loaded = self.loaded.get(model)
        scores, tokens = await asyncio.to_thread(loaded.score, query, list(passages),
                                                 truncate=truncation is not Truncation.REJECT)
        if loaded.kind is LoadedKind.CROSS_ENCODER and not raw_scores:
            scores = 1.0 / (1.0 + np.exp(-scores))
        order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))[: top_n or len(passages)]
        results = [Scored(i, float(scores[i]), passages[i] if return_text else "") for i in order]
        return RerankResult(model, results, tokens, 0.0, time.perf_counter() - started)

    def _loaded_info(self, model: str) -> Info:
        loaded = self.loaded.get(model).info
        return Info(model=loaded.id, revision=loaded.revision, dimensions=loaded.dimensions, sparse_dimensions=0,
                    max_input_tokens=loaded.max_input_tokens, max_batch_size=self.settings.max_request_inputs,
                    max_batch_tokens=self.settings.max_request_inputs * loaded.max_input_tokens, engine="torch",
                    engine_version=self.engine.version, models=[self.source.id, *self.loaded.ids()],
                    sparse_models=[], reranker=loaded.kind is LoadedKind.CROSS_ENCODER)

    def info(self, model: str = "") -> Info:
        if model and model in self.loaded:
            return self._loaded_info(model)
        model_id = self.check_model(model)
        return Info(
            model=model_id,
            revision=self.source.revision,
            dimensions=self.source.dimension,
            sparse_dimensions=self.analyzer("").dimensions,
            max_input_tokens=self.max_input_tokens,
            max_batch_size=self.settings.max_request_inputs,
            max_batch_tokens=self.settings.max_request_inputs * self.max_input_tokens,
            engine=self.engine.name,
            engine_version=self.engine.version,
            models=[self.source.id, *self.loaded.ids()],
            sparse_models=list(SPARSE_MODELS),
        )
