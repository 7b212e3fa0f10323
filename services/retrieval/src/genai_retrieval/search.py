"""The search pipeline: embed the query, gather candidates per stage, fuse, rerank, threshold, cut to top_k.

Stages are the dense and the sparse vector search. Hybrid mode fuses their ranked lists with the request's
fusion (see ``fusion.FUSIONS``); dense or sparse mode orders by that stage's own score. A rerank, when asked
for, scores the candidates with the embedding service's cross-encoder and orders by that, or (``rerank.fuse``)
by the request's fusion over the first-stage and reranker scores. Every result keeps the scores of the stages
it went through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from genai_core import spans
from genai_core.errors import InvalidArgument
from genai_core.limits import RETRIEVAL

from genai_retrieval import payloads, traces
from genai_retrieval.catalog import Catalog
from genai_retrieval.fusion import DEFAULT_FUSION, FUSIONS, Fuse
from genai_retrieval.ports import Embeddings
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.store import DENSE, SPARSE, Hit, Store
from genai_retrieval.types import (
    Collection,
    Embedded,
    Filter,
    Searched,
    SearchMode,
    SearchOptions,
    SearchResult,
    SparseVector,
    StageScores,
)
from genai_retrieval.vectors import Vectors, local_sparse_query

DEFAULT_TOP_K = 10
CANDIDATES_PER_RESULT = 4  # candidates gathered per requested result when fusing or reranking


@dataclass(frozen=True)
class _Plan:
    top_k: int
    mode: SearchMode
    fuse: Fuse
    candidates: int
    filter: Filter | None
    dense: bool
    sparse: bool
    limit: int  # hits asked of each stage


@dataclass
class _Row:
    hit: Hit
    scores: dict[str, float] = field(default_factory=dict)  # stage → that stage's score
    fused: float | None = None
    rerank: float | None = None
    final: float = 0.0


def _plan(c: Collection, query: str, options: SearchOptions, path: str, max_top_k: int) -> _Plan:
    """The owner of the search options' rules; ``path`` names the request's options in errors."""
    if not query.strip():
        raise InvalidArgument.for_field("query", "the query is empty")
    top_k = options.top_k if options.top_k is not None else DEFAULT_TOP_K
    if not 1 <= top_k <= max_top_k:
        raise InvalidArgument.for_field(f"{path}.top_k", f"must be between 1 and {max_top_k}")
    mode = options.mode or (SearchMode.HYBRID if c.sparse_enabled else SearchMode.DENSE)
    if mode is not SearchMode.DENSE and not c.sparse_enabled:
        raise InvalidArgument.for_field(
            f"{path}.mode", f"collection {c.name!r} has no sparse vectors; use SEARCH_MODE_DENSE")
    # The default rule stays within the limit (a deployment may raise max_top_k); an explicit count is checked.
    candidates = options.candidate_count if options.candidate_count is not None else min(
        CANDIDATES_PER_RESULT * top_k, RETRIEVAL.max_candidate_count)
    if not 1 <= candidates <= RETRIEVAL.max_candidate_count:  # each is fetched, fused and maybe reranked
        raise InvalidArgument.for_field(f"{path}.candidate_count",
                                        f"must be between 1 and {RETRIEVAL.max_candidate_count}")
    candidates = max(candidates, top_k)
    return _Plan(
        top_k=top_k, mode=mode, fuse=FUSIONS[options.fusion or DEFAULT_FUSION], candidates=candidates,
        filter=options.filter, dense=mode is not SearchMode.SPARSE, sparse=mode is not SearchMode.DENSE,
        limit=candidates if (mode is SearchMode.HYBRID or options.rerank.enabled) else top_k,
    )


def _order(stages: dict[str, list[Hit]], plan: _Plan) -> list[_Row]:
    """One row per hit, best first: by fused score in hybrid mode, else by the one stage's score."""
    rows: dict[str, _Row] = {}
    for stage, hits in stages.items():
        for h in hits:
            rows.setdefault(h.id, _Row(h)).scores[stage] = h.score
    if plan.mode is SearchMode.HYBRID:
        fused = plan.fuse({stage: [(h.id, h.score) for h in hits] for stage, hits in stages.items()})
        for row in rows.values():
            row.fused = fused[row.hit.id]
    for row in rows.values():
        row.final = _first_stage(row, plan)
    return sorted(rows.values(), key=lambda row: -row.final)


def _first_stage(row: _Row, plan: _Plan) -> float:
    """The score ``_order`` ranked the row by: the fused one in hybrid mode, else its one stage's."""
    if plan.mode is SearchMode.HYBRID:
        assert row.fused is not None
        return row.fused
    return row.scores[DENSE if plan.dense else SPARSE]


def _fuse_rerank(rows: list[_Row], plan: _Plan) -> list[_Row]:
    """``rows`` (reranked) ordered by the plan's fusion over the first stage's scores and the reranker's; a row the
    reranker did not score keeps its first-stage place in that list only."""
    first = sorted(((row.hit.id, _first_stage(row, plan)) for row in rows), key=lambda item: -item[1])
    fused = plan.fuse({"first": first,
                       "rerank": [(row.hit.id, row.rerank) for row in rows if row.rerank is not None]})
    for row in rows:
        row.final = fused[row.hit.id]
    return sorted(rows, key=lambda row: -row.final)


def _result(row: _Row) -> SearchResult:
    scores = StageScores(dense=row.scores.get(DENSE), sparse=row.scores.get(SPARSE), fused=row.fused,
                         rerank=row.rerank)
    return SearchResult(payloads.chunk(row.hit.id, row.hit.payload), row.final, scores)


class Searcher:
    def __init__(self, catalog: Catalog, store: Store, vectors: Vectors, embeddings: Embeddings,
                 settings: RetrievalSettings) -> None:
        self._catalog = catalog
        self._store = store
        self._vectors = vectors
        self._embeddings = embeddings  # the reranker
        self._settings = settings

    async def search(self, tenant: str, collection: str, query: str, options: SearchOptions,
                     path: str = "options") -> Searched:
        """The top results for ``query``; ``path`` names ``options`` in error messages."""
        c = await self._catalog.get(tenant, collection)
        plan = _plan(c, query, options, path, self._settings.max_top_k)
        stages, tokens = await self._gather(c, query, plan)
        with spans.stage(traces.PIPELINE, "fuse"):
            rows = _order(stages, plan)[: plan.candidates]
        if options.rerank.enabled and rows:
            rows = await self._fill_payloads(c, rows)  # the reranker reads every candidate's text
            with spans.stage(traces.PIPELINE, "rerank"):
                rows, used = await self._rerank(query, options.rerank.model, rows)
            if options.rerank.fuse:
                rows = _fuse_rerank(rows, plan)
            tokens += used
        if options.score_threshold is not None:
            rows = [row for row in rows if row.final >= options.score_threshold]
        if not options.rerank.enabled:
            rows = await self._fill_payloads(c, rows[: plan.top_k])
        results = [_result(row) for row in rows[: plan.top_k]]
        traces.retrieved(spans.current(spans.Operation.RETRIEVAL), data_source=f"{c.tenant}/{c.name}", query=query,
                         top_k=plan.top_k, mode=plan.mode.value, rerank=options.rerank.enabled, results=results,
                         tokens=tokens)
        return Searched(results, tokens)

    async def _gather(self, c: Collection, query: str, plan: _Plan) -> tuple[dict[str, list[Hit]], int]:
        """Each stage's hits, best first (dense before sparse), and the query's embedding tokens."""
        local = local_sparse_query(c, query) if plan.sparse and not plan.dense else None
        if local is not None:  # a sparse-only search with a text analyzer: no embedding service involved
            got = Embedded([], [local], 0)
        else:
            with spans.stage(traces.PIPELINE, "embed"):
                got = await self._vectors.encode(c, [query], sparse=plan.sparse, dense=plan.dense)
        sparse_q: SparseVector | None = got.sparse[0] if plan.sparse else None
        queries = {DENSE: got.dense[0] if plan.dense else None,
                   SPARSE: sparse_q if sparse_q is not None and sparse_q.indices else None}  # stop words only: no terms

        async def stage(using: str, vector) -> list[Hit]:  # noqa: ANN001
            if vector is None:
                return []
            # Ids and scores only: payloads (chunk text) are fetched for the survivors of fusion and the cut.
            with spans.stage(traces.PIPELINE, using):
                return await asyncio.to_thread(self._store.search, c.tenant, c.name, using, vector, plan.limit,
                                               plan.filter, False)

        dense, sparse = await asyncio.gather(*(stage(using, vector) for using, vector in queries.items()))
        return {DENSE: dense, SPARSE: sparse}, got.prompt_tokens

    async def _fill_payloads(self, c: Collection, rows: list[_Row]) -> list[_Row]:
        """``rows`` with their chunks' payloads; a chunk deleted since the search drops out."""
        if not rows:
            return rows
        with spans.stage(traces.PIPELINE, "fetch"):
            found = await asyncio.to_thread(self._store.payloads, c.tenant, c.name, [row.hit.id for row in rows])
        for row in rows:
            row.hit.payload = found.get(row.hit.id, {})
        return [row for row in rows if row.hit.id in found]

    async def _rerank(self, query: str, model: str, rows: list[_Row]) -> tuple[list[_Row], int]:
        """Rows ordered by the cross-encoder's score (rows it did not score keep theirs, last); rerank tokens."""
        passages = [row.hit.payload.get(payloads.TEXT, "") for row in rows]
        reranked = await self._embeddings.rerank(model or self._settings.reranker_model, query, passages)
        for index, score in reranked.scores:
            rows[index].rerank = rows[index].final = score
        ordered = sorted(rows, key=lambda row: -row.rerank if row.rerank is not None else float("inf"))
        return ordered, reranked.prompt_tokens
