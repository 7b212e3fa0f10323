"""The search pipeline: embed the query, gather candidates per stage, fuse, rerank, threshold, cut to top_k.

Stages are the dense and the sparse vector search. Hybrid mode fuses their ranked lists with the request's
fusion (see ``fusion.FUSIONS``); dense or sparse mode orders by that stage's own score. A rerank, when asked
for, scores the candidates with the embedding service's cross-encoder and orders by that. Every result keeps
the scores of the stages it went through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genai.embedding.v1 import embedding_service_pb2 as epb
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_core import spans
from genai_core.errors import InvalidArgument

from genai_retrieval import filters as F
from genai_retrieval import resources, traces
from genai_retrieval.fusion import FUSIONS, Fusion
from genai_retrieval.store import DENSE, SPARSE, Hit

if TYPE_CHECKING:
    from genai_retrieval.service import Retrieval

DEFAULT_TOP_K = 10
CANDIDATES_PER_RESULT = 4  # candidates gathered per requested result when fusing or reranking


@dataclass
class Searched:
    results: list[pb.SearchResult]
    tokens: int  # embedding (and rerank) prompt tokens


@dataclass(frozen=True)
class _Plan:
    top_k: int
    mode: int
    fusion: Fusion
    candidates: int
    filter: F.Filter | None
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


def _plan(meta: dict[str, Any], query: str, options: pb.SearchOptions, path: str, max_top_k: int) -> _Plan:
    if not query.strip():
        raise InvalidArgument.for_field("query", "the query is empty")
    top_k = options.top_k if options.HasField("top_k") else DEFAULT_TOP_K
    if not 1 <= top_k <= max_top_k:
        raise InvalidArgument.for_field(f"{path}.top_k", f"must be between 1 and {max_top_k}")
    mode = options.mode or (pb.SEARCH_MODE_HYBRID if meta["sparse_enabled"] else pb.SEARCH_MODE_DENSE)
    if mode not in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_SPARSE, pb.SEARCH_MODE_HYBRID):
        raise InvalidArgument.for_field(f"{path}.mode", "unknown search mode")
    if mode != pb.SEARCH_MODE_DENSE and not meta["sparse_enabled"]:
        raise InvalidArgument.for_field(
            f"{path}.mode", f"collection {meta['name']!r} has no sparse vectors; use SEARCH_MODE_DENSE")
    if options.fusion not in FUSIONS:
        raise InvalidArgument.for_field(f"{path}.fusion", "unknown fusion")
    candidates = options.candidate_count if options.HasField("candidate_count") else CANDIDATES_PER_RESULT * top_k
    candidates = max(candidates, top_k)
    flt = F.from_proto(options.filter, f"{path}.filter") if options.HasField("filter") else None
    return _Plan(
        top_k=top_k, mode=mode, fusion=FUSIONS[options.fusion], candidates=candidates, filter=flt,
        dense=mode != pb.SEARCH_MODE_SPARSE, sparse=mode != pb.SEARCH_MODE_DENSE,
        limit=candidates if (mode == pb.SEARCH_MODE_HYBRID or options.rerank.enabled) else top_k,
    )


async def _gather(r: Retrieval, tenant: str, meta: dict[str, Any], query: str,
                  plan: _Plan) -> tuple[dict[str, list[Hit]], int]:
    """Each stage's hits, best first (dense before sparse), and the query's embedding tokens."""
    with spans.stage(traces.PIPELINE, "embed"):
        dense_q, sparse_q, tokens = await r.embed(meta, [query], plan.sparse, plan.dense)
    queries = {DENSE: dense_q[0] if plan.dense else None,
               SPARSE: sparse_q[0] if plan.sparse and sparse_q[0][0] else None}  # stop words only: no terms

    async def stage(using: str, vector) -> list[Hit]:  # noqa: ANN001
        if vector is None:
            return []
        # Ids and scores only: payloads (chunk text) are fetched for the survivors of fusion and the cut.
        with spans.stage(traces.PIPELINE, using):
            return await r.run(r.store.search, tenant, meta["name"], using, vector, plan.limit, plan.filter, False)

    dense, sparse = await asyncio.gather(*(stage(using, vector) for using, vector in queries.items()))
    return {DENSE: dense, SPARSE: sparse}, tokens


async def _fill_payloads(r: Retrieval, tenant: str, name: str, rows: list[_Row]) -> list[_Row]:
    """``rows`` with their chunks' payloads; a chunk deleted since the search drops out."""
    if not rows:
        return rows
    with spans.stage(traces.PIPELINE, "fetch"):
        found = await r.run(r.store.payloads, tenant, name, [row.hit.id for row in rows])
    for row in rows:
        row.hit.payload = found.get(row.hit.id, {})
    return [row for row in rows if row.hit.id in found]


def _order(stages: dict[str, list[Hit]], plan: _Plan) -> list[_Row]:
    """One row per hit, best first: by fused score in hybrid mode, else by the one stage's score."""
    rows: dict[str, _Row] = {}
    for stage, hits in stages.items():
        for h in hits:
            rows.setdefault(h.id, _Row(h)).scores[stage] = h.score
    if plan.mode == pb.SEARCH_MODE_HYBRID:
        fused = plan.fusion({stage: [(h.id, h.score) for h in hits] for stage, hits in stages.items()})
        for row in rows.values():
            row.fused = row.final = fused[row.hit.id]
    else:
        stage = DENSE if plan.dense else SPARSE
        for row in rows.values():
            row.final = row.scores[stage]
    return sorted(rows.values(), key=lambda row: -row.final)


async def _rerank(r: Retrieval, query: str, model: str, rows: list[_Row]) -> tuple[list[_Row], int]:
    """Rows ordered by the cross-encoder's score (rows it did not score keep theirs, last); rerank tokens."""
    passages = [row.hit.payload.get("text", "") for row in rows]
    reply = await r.downstream.embedding.Rerank(epb.RerankRequest(
        model=model or r.settings.reranker_model, query=query, passages=passages))
    for res in reply.results:
        rows[res.index].rerank = rows[res.index].final = res.score
    ordered = sorted(rows, key=lambda row: -row.rerank if row.rerank is not None else float("inf"))
    return ordered, reply.usage.prompt_tokens


def _result(row: _Row) -> pb.SearchResult:
    scores = pb.StageScores()
    if DENSE in row.scores:
        scores.dense = row.scores[DENSE]
    if SPARSE in row.scores:
        scores.sparse = row.scores[SPARSE]
    if row.fused is not None:
        scores.fused = row.fused
    if row.rerank is not None:
        scores.rerank = row.rerank
    return pb.SearchResult(chunk=resources.chunk(row.hit), score=row.final, stage_scores=scores)


async def search(r: Retrieval, tenant: str, collection: str, query: str, options: pb.SearchOptions,
                 path: str = "options") -> Searched:
    """The top results for ``query``; ``path`` names ``options`` in error messages."""
    meta = await r.meta(tenant, collection)
    plan = _plan(meta, query, options, path, r.settings.max_top_k)
    stages, tokens = await _gather(r, tenant, meta, query, plan)
    with spans.stage(traces.PIPELINE, "fuse"):
        rows = _order(stages, plan)[: plan.candidates]
    if options.rerank.enabled and rows:
        rows = await _fill_payloads(r, tenant, meta["name"], rows)  # the reranker reads every candidate's text
        with spans.stage(traces.PIPELINE, "rerank"):
            rows, used = await _rerank(r, query, options.rerank.model, rows)
        tokens += used
    if options.HasField("score_threshold"):
        rows = [row for row in rows if row.final >= options.score_threshold]
    if not options.rerank.enabled:
        rows = await _fill_payloads(r, tenant, meta["name"], rows[: plan.top_k])
    results = [_result(row) for row in rows[: plan.top_k]]
    traces.retrieved(spans.current(spans.Operation.RETRIEVAL), data_source=f"{tenant}/{meta['name']}", query=query,
                     top_k=plan.top_k, mode=pb.SearchMode.Name(plan.mode).removeprefix("SEARCH_MODE_").lower(),
                     rerank=options.rerank.enabled, results=results, tokens=tokens)
    return Searched(results, tokens)
