"""The pipelines with fakes of the ports (no other service, no gRPC) over a real embedded store: each pipeline
gets its collaborators explicitly, so a test can hand it scripted ones."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence

import pytest
from genai_core.errors import InvalidArgument, NotFound, Unavailable
from genai_retrieval.pipelines import Pipelines
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import EdgeStore
from genai_retrieval.types import (
    AnswerDone,
    ChatDone,
    ChatEvent,
    ChatReply,
    ChatRequest,
    ChunkingOptions,
    CollectionSpec,
    DocumentInput,
    Embedded,
    EmbeddingModel,
    Failure,
    GenerationOptions,
    Grounded,
    Ingested,
    Outcome,
    Reranked,
    SearchMode,
    SearchOptions,
    SparseVector,
    TextDelta,
    Usage,
    VectorConfig,
)
from genai_retrieval.vectors import Vectors
from genai_sparse import bm25

DIMS = 8


class FakeEmbeddings:
    """Letter counts as dense vectors, hashed words as sparse ones; records every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.dims = DIMS
        self.down = False  # True: every call fails as the embedding service being unreachable does

    async def model(self, name: str) -> EmbeddingModel:
        return EmbeddingModel(name, "rev-1", DIMS, supported_dimensions=(4,))

    async def embed(self, model: str, texts: Sequence[str], *, dense: bool, sparse: bool, sparse_model: str = "",
                    dimensions: int | None = None) -> Embedded:
        self.calls.append({"model": model, "texts": list(texts), "dense": dense, "sparse": sparse,
                           "sparse_model": sparse_model, "dimensions": dimensions})
        if self.down:
            raise Unavailable("the embedding service is unavailable; retry shortly")
        size = dimensions or self.dims
        if sparse_model == "bm25-english":  # what the real service computes for it
            vectors = [[t.lower().count(ch) + 0.1 for ch in "aeioustrnl"[:size]] for t in texts]
            sparse_vectors = [bm25.text_vector(sparse_model, t) for t in texts]
            return Embedded(vectors if dense else [], [SparseVector(v.indices, v.values) for v in sparse_vectors], 1)
        vectors = [[t.lower().count(ch) + 0.1 for ch in "aeioustrnl"[:size]] for t in texts]
        terms = [sorted({zlib.crc32(w.encode()) % 9973 for w in t.lower().split()}) for t in texts]
        return Embedded(vectors if dense else [], [SparseVector(ids, [1.0] * len(ids)) for ids in terms] if sparse else [],
                        sum(len(t.split()) for t in texts))

    async def rerank(self, model: str, query: str, passages: Sequence[str]) -> Reranked:
        return Reranked([(i, float(len(set(query.split()) & set(p.split())))) for i, p in enumerate(passages)], 1)


class FakeChat:
    def __init__(self, events: list[ChatEvent]) -> None:
        self.events = events
        self.answer = "Paris [1]."
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatReply:
        self.requests.append(request)
        return ChatReply(self.answer, Usage(5, 2, 7), "fake-llm", truncated=False)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        self.requests.append(request)
        for event in self.events:
            yield event


class FakePacker:
    """Keeps the passages at ``keep``."""

    def __init__(self, keep: list[int]) -> None:
        self.keep = keep
        self.passages: list[str] = []

    async def pack(self, tokenizer: str, token_budget: int, system_prompt: str, question: str,
                   passages: Sequence[str]) -> list[int]:
        self.passages = list(passages)
        return [i for i in self.keep if i < len(passages)]


DOCS = {
    "paris": "Paris is the capital of France.",
    "berlin": "Berlin is the capital of Germany.",
    "rome": "Rome is the capital of Italy.",
}


@pytest.fixture
def built(tmp_path):
    """(pipelines, embeddings, chat, packer) over an embedded store in tmp_path."""
    settings = RetrievalSettings(data_dir=tmp_path, embed_batch_size=2, chunk_size_tokens=64, chunk_overlap_tokens=8,
                                 answer_model="fake-llm", answer_max_new_tokens=16)
    store = EdgeStore(tmp_path)
    embeddings = FakeEmbeddings()
    chat = FakeChat([TextDelta("Berlin "), TextDelta(""), TextDelta("[1]."),
                     ChatDone(Usage(9, 2, 11), "fake-llm", truncated=True)])
    packer = FakePacker(keep=[1])
    yield Pipelines.build(settings, store, embeddings, chat, packer), embeddings, chat, packer
    store.close()


async def _seed(p: Pipelines, sparse: bool = True, dims: int | None = None) -> list:
    await p.catalog.create("acme", CollectionSpec("docs", embedding_model="fake-model", sparse_enabled=sparse,
                                                  sparse_model="bm25" if sparse else "",
                                                  vector_config=VectorConfig(dimensions=dims)))
    docs = [DocumentInput(document_id=k, text=t, title=k.title()) for k, t in DOCS.items()]
    return [e async for e in p.ingestion.run("acme", "docs", docs, ChunkingOptions())]


async def test_ingestion_embeds_in_batches_and_search_finds_the_same_text(built):
    p, embeddings, _, _ = built
    events = await _seed(p)
    done = events[-1]
    assert isinstance(done, Ingested) and [r.outcome for r in done.results] == [Outcome.CREATED] * 3
    # one chunk per document, embed_batch_size 2: one call per document (each document is embedded on its own)
    assert [c["texts"] for c in embeddings.calls] == [[t] for t in DOCS.values()]
    assert all(c["sparse"] and c["sparse_model"] == "bm25" and c["model"] == "fake-model" for c in embeddings.calls)
    assert done.tokens == sum(len(t.split()) for t in DOCS.values())
    found = await p.searcher.search("acme", "docs", DOCS["berlin"], SearchOptions(top_k=1, mode=SearchMode.DENSE))
    assert found.results[0].chunk.document_id == "berlin" and found.results[0].chunk.title == "Berlin"
    assert found.results[0].stage_scores.dense == pytest.approx(1.0, abs=1e-5) and found.results[0].stage_scores.sparse is None
    hybrid = await p.searcher.search("acme", "docs", "capital of Italy", SearchOptions())  # default: hybrid
    assert hybrid.results[0].chunk.document_id == "rome" and hybrid.results[0].stage_scores.fused is not None
    again = await _docs_again(p)
    assert [r.outcome for r in again.results] == [Outcome.UNCHANGED] * 3


async def test_a_fused_rerank_orders_by_the_fusion_of_first_stage_and_reranker_scores(built):
    """rerank.fuse: the search's fusion (DBSF here) over the first stage's scores and the reranker's, not the
    reranker's order alone; every result keeps both scores."""
    from genai_retrieval.fusion import dbsf
    from genai_retrieval.types import RerankOptions

    p, embeddings, *_ = built
    await _seed(p)
    opinion = {"rome": 1.0, "berlin": 0.95, "paris": 0.0}  # a reranker that disagrees with the retriever

    async def rerank(model: str, query: str, passages: Sequence[str]) -> Reranked:
        return Reranked([(i, next(v for k, v in opinion.items() if k in t.lower())) for i, t in enumerate(passages)], 1)

    embeddings.rerank = rerank
    query = "Paris France capital"
    first = await p.searcher.search("acme", "docs", query, SearchOptions())
    plain = await p.searcher.search("acme", "docs", query, SearchOptions(rerank=RerankOptions(enabled=True)))
    fused = await p.searcher.search("acme", "docs", query, SearchOptions(rerank=RerankOptions(enabled=True, fuse=True)))
    assert first.results[0].chunk.document_id == "paris"
    assert [r.chunk.document_id for r in plain.results] == ["rome", "berlin", "paris"]
    scores = {r.chunk.document_id: r.stage_scores for r in fused.results}
    assert all(s.fused is not None and s.rerank is not None for s in scores.values())
    ranked = sorted(scores.items(), key=lambda item: -item[1].fused)
    expected = dbsf({"first": [(d, s.fused) for d, s in ranked], "rerank": [(d, s.rerank) for d, s in ranked]})
    order = sorted(expected, key=lambda d: -expected[d])
    assert [r.chunk.document_id for r in fused.results] == order and order != ["rome", "berlin", "paris"]
    assert [r.score for r in fused.results] == pytest.approx([expected[d] for d in order])


async def _docs_again(p: Pipelines) -> Ingested:
    docs = [DocumentInput(document_id=k, text=t, title=k.title()) for k, t in DOCS.items()]
    return [e async for e in p.ingestion.run("acme", "docs", docs, ChunkingOptions())][-1]


async def test_a_truncated_collection_asks_for_its_dimensions(built):
    p, embeddings, _, _ = built
    await _seed(p, sparse=False, dims=4)
    c = await p.catalog.get("acme", "docs")
    assert (c.dimensions, c.model_dimensions) == (4, DIMS)
    assert {call["dimensions"] for call in embeddings.calls} == {4}
    with pytest.raises(InvalidArgument) as err:
        await p.catalog.create("acme", CollectionSpec("other", vector_config=VectorConfig(dimensions=5)))
    assert err.value.field_violations[0].field == "vector_config.dimensions"


async def test_a_model_that_changed_size_is_refused_and_writes_nothing(built):
    p, embeddings, _, _ = built
    await _seed(p)
    before = await p.catalog.counts(await p.catalog.get("acme", "docs"))
    embeddings.dims = 6  # the model behind the name now gives other vectors
    docs = [DocumentInput(document_id="new", text="Madrid is the capital of Spain.")]
    with pytest.raises(InvalidArgument, match="returned 6 dimensions, the collection has 8"):
        [e async for e in p.ingestion.run("acme", "docs", docs, ChunkingOptions())]
    assert await p.catalog.counts(await p.catalog.get("acme", "docs")) == before


async def test_answer_grounds_on_the_packed_passages_only(built):
    p, _, chat, packer = built
    await _seed(p)
    answered = await p.answerer.answer("acme", "docs", "capital of Germany?", SearchOptions(mode=SearchMode.SPARSE),
                                       GenerationOptions(system_prompt="Be brief."))
    # the packer saw every result numbered as found, kept the second; the prompt renumbers what was kept
    assert len(packer.passages) == 3 and packer.passages[1].startswith("[2] ")
    kept = answered.contexts[0].chunk
    request = chat.requests[-1]
    assert [m.role for m in request.messages] == ["system", "user"] and request.messages[0].content == "Be brief."
    assert f"[1] {kept.title}: {kept.text}" in request.messages[1].content and "[2]" not in request.messages[1].content
    assert (request.model, request.max_new_tokens, request.temperature, request.top_p) == ("fake-llm", 16, 0.0, None)
    assert len(answered.contexts) == 1 and answered.citations[0].document_id == kept.document_id
    assert answered.usage == Usage(5, 2, 7) and answered.retrieval_tokens > 0


async def test_citations_follow_the_numbers_the_prompt_gave_the_sources(built):
    # Issue 14: grounding was untested end to end; citations fell back to the top context, so a prompt
    # without its sources passed. Here the packer keeps the third and first results, in that order, so
    # the prompt's [1] is the third result: a marker must map to the source the prompt numbered so.
    p, _, chat, packer = built
    await _seed(p)
    packer.keep = [2, 0]
    chat.answer = "Rome is the capital of Italy [2]. Paris is the capital of France [1]."
    answered = await p.answerer.answer("acme", "docs", "capitals of Italy and France?",
                                       SearchOptions(mode=SearchMode.SPARSE, top_k=3), GenerationOptions())
    prompt = chat.requests[-1].messages[-1].content
    first, second = answered.contexts  # what the prompt numbered [1] and [2], in that order
    for number, context in ((1, first), (2, second)):
        assert f"[{number}] {context.chunk.title}: {context.chunk.text}" in prompt  # the sources are in the prompt
    assert "[3]" not in prompt and len(packer.passages) == 3
    cited = [(c.document_id, c.context_index) for c in answered.citations]
    assert cited == [(second.chunk.document_id, 1), (first.chunk.document_id, 0)]
    assert answered.citations[0].answer_span.start == 0  # "Rome is the capital of Italy [2]."
    assert first.chunk.document_id != second.chunk.document_id


async def test_sparse_only_search_needs_no_embedding_service(built):
    # Issue 14 defect 10: with the embedding service down, a sparse search failed too, though bm25-english
    # terms need only the text. Hybrid and dense searches still need the service and say so.
    p, embeddings, _, _ = built
    await p.catalog.create("acme", CollectionSpec("words", embedding_model="fake-model", sparse_enabled=True,
                                                  sparse_model="bm25-english"))
    docs = [DocumentInput(document_id=k, text=t) for k, t in DOCS.items()]
    [e async for e in p.ingestion.run("acme", "words", docs, ChunkingOptions())]
    embeddings.down, calls = True, len(embeddings.calls)
    found = await p.searcher.search("acme", "words", "capital of Germany", SearchOptions(mode=SearchMode.SPARSE))
    assert found.results[0].chunk.document_id == "berlin" and len(embeddings.calls) == calls
    with pytest.raises(Unavailable):
        await p.searcher.search("acme", "words", "capital of Germany", SearchOptions(mode=SearchMode.HYBRID))


async def test_answer_stream_events_and_a_failure_inference_reported(built):
    p, _, chat, _ = built
    await _seed(p)
    events = [e async for e in p.answerer.stream("acme", "docs", "Germany", SearchOptions(), GenerationOptions())]
    assert isinstance(events[0], Grounded) and [type(e) for e in events[1:]] == [TextDelta, TextDelta, AnswerDone]
    done = events[-1]
    assert done.truncated and done.usage.total_tokens == 11 and done.citations[0].answer_span is not None
    chat.events = [TextDelta("Ber"), Failure("RESOURCE_EXHAUSTED", "QUEUE_FULL", "the queue is full")]
    failed = [e async for e in p.answerer.stream("acme", "docs", "Germany", SearchOptions(), GenerationOptions())]
    assert failed[-1] == Failure("RESOURCE_EXHAUSTED", "QUEUE_FULL", "the queue is full")


async def test_each_rule_has_its_owner_and_order(built):
    p, _, _, _ = built
    # the question is checked first, before the tenant and the collection
    with pytest.raises(InvalidArgument) as err:
        await p.answerer.answer("Not A Tenant!", "missing", "  ", SearchOptions(), GenerationOptions())
    assert err.value.field_violations[0].field == "question"
    with pytest.raises(InvalidArgument) as err:
        await p.searcher.search("Not A Tenant!", "missing", "q", SearchOptions())
    assert err.value.field_violations[0].field == "tenant"
    with pytest.raises(NotFound):  # a malformed collection name reads as missing
        await p.searcher.search("acme", "Bad Name", "q", SearchOptions())
    await _seed(p, sparse=False)
    with pytest.raises(InvalidArgument) as err:
        await p.answerer.answer("acme", "docs", "q", SearchOptions(top_k=0), GenerationOptions())
    assert err.value.field_violations[0].field == "search.top_k"
    with pytest.raises(InvalidArgument) as err:
        await p.searcher.search("acme", "docs", "q", SearchOptions(mode=SearchMode.HYBRID))
    assert err.value.field_violations[0].field == "options.mode"
    listed = await p.catalog.list("", "", 0)  # no tenant: the default one, which has nothing
    assert listed.items == [] and listed.next_page_token == ""


async def test_vectors_batch_and_sum_tokens(built):
    p, embeddings, _, _ = built
    await _seed(p, sparse=False)
    c = await p.catalog.get("acme", "docs")
    embeddings.calls.clear()
    texts = [f"text number {i}" for i in range(5)]
    got = await Vectors(embeddings, batch_size=2).encode(c, texts, sparse=False)
    assert [len(call["texts"]) for call in embeddings.calls] == [2, 2, 1]
    assert len(got.dense) == 5 and got.sparse == [] and got.prompt_tokens == 15
