"""The retrieval evaluator: search a collection with each query, rank documents, score against qrels.

The collection is the run's (``retrieval.collection``, which must exist) or the task's own, built once from
the task's corpus in tenant ``evaluation`` as ``eval-<task>`` (one chunk per document, dense and sparse
vectors). Metrics come from ``ir-measures`` (trec_eval's definitions): nDCG@k, Recall@k, P@k, MRR.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import ir_measures
from genai_core.errors import NotFound

from genai_evaluation import templates
from genai_evaluation.context import TaskContext, doc_json, traced
from genai_evaluation.ports import CorpusDocument, Hit
from genai_evaluation.prompts import Example
from genai_evaluation.types import Sample, SearchMode

EVAL_TENANT = "evaluation"
_BUILDING: dict[str, threading.Lock] = {}
_BUILDING_GUARD = threading.Lock()
_MEASURES = {"ndcg_at_k": lambda k: ir_measures.nDCG @ k, "recall_at_k": lambda k: ir_measures.R @ k,
             "precision_at_k": lambda k: ir_measures.P @ k}


def own_collection(task_id: str) -> str:
    return "eval-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in task_id)[:58]


def corpus_documents(docs: Sequence[dict[str, Any]]) -> list[CorpusDocument]:
    return [CorpusDocument(str(d["id"]), str(d["text"]), str(d.get("title", ""))) for d in docs]


async def prepare(ctx: TaskContext, corpus: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(tenant, collection) to search: the run's collection, or the task's own built from its corpus."""
    target = ctx.spec.retrieval
    assert ctx.retriever is not None
    if target.collection:
        tenant = target.tenant or "default"
        if await ctx.retriever.document_count(tenant, target.collection) is None:
            raise NotFound(f"no collection {target.collection!r} in tenant {tenant!r}", resource_type="collection",
                           resource_name=target.collection)
        return tenant, target.collection
    name = own_collection(ctx.task.id)
    # Runs execute on several threads; two runs of one task (an experiment's variants) build it once.
    with _BUILDING_GUARD:
        lock = _BUILDING.setdefault(name, threading.Lock())
    await asyncio.to_thread(lock.acquire)
    try:
        if await ctx.retriever.document_count(EVAL_TENANT, name) != len(corpus):
            await ctx.retriever.build(EVAL_TENANT, name, corpus_documents(corpus))
    finally:
        lock.release()
    return EVAL_TENANT, name


def mode(ctx: TaskContext) -> SearchMode:
    return ctx.spec.retrieval.mode or ctx.task.retrieval.mode


def top_k(ctx: TaskContext) -> int:
    return ctx.spec.retrieval.top_k or ctx.task.retrieval.top_k


def ranked_documents(hits: Sequence[Hit]) -> list[tuple[str, float]]:
    """Document ids in rank order, each once (at its best chunk's rank)."""
    seen: dict[str, float] = {}
    for hit in hits:
        seen.setdefault(hit.document_id, hit.score)
    return list(seen.items())


def relevance(doc: dict[str, Any], field: str) -> dict[str, int]:
    value = doc.get(field)
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(v): 1 for v in value}
    return {str(value): 1} if value is not None else {}


def query_scores(ranked: Sequence[tuple[str, float]], qrels: dict[str, int], names: Sequence[str],
                 options: dict[str, dict[str, Any]]) -> dict[str, float]:
    measures, by_name = [], {}
    for name in names:
        if name == "mrr":
            measure = ir_measures.RR
        else:
            base, _, k = name.partition("@")
            measure = _MEASURES[{"ndcg": "ndcg_at_k", "recall": "recall_at_k", "precision": "precision_at_k"}[base]](int(k))
        measures.append(measure)
        by_name[str(measure)] = name
    run = [ir_measures.ScoredDoc("q", doc, float(len(ranked) - rank)) for rank, (doc, _) in enumerate(ranked)]
    judged = [ir_measures.Qrel("q", doc, grade) for doc, grade in qrels.items()]
    if not run:
        return dict.fromkeys(names, 0.0)
    values = ir_measures.calc_aggregate(measures, judged, run)
    return {by_name[str(m)]: float(v) for m, v in values.items()}


async def evaluate(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    assert ctx.retriever is not None
    spec = ctx.task.retrieval
    names = [n for n in ctx.score_names]

    async def one(example: Example) -> Sample:
        query = templates.render(spec.query_field, example.doc)
        with traced(ctx, example) as trace_id:
            hits, usage = await ctx.limited(ctx.retriever.search(ctx.tenant, ctx.collection, query, mode(ctx),
                                                                 top_k(ctx), ctx.spec.retrieval.rerank))
        ranked = ranked_documents(hits)
        qrels = relevance(example.doc, spec.relevant_field)
        scores = query_scores(ranked, qrels, names, {})
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt=query,
                      target=",".join(sorted(qrels)), retrieved_ids=tuple(d for d, _ in ranked), scores=scores,
                      usage=usage, trace_id=trace_id)

    return list(await asyncio.gather(*(one(e) for e in examples)))
