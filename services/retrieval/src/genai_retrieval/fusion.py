"""Hybrid-search fusion: how the ranked dense and sparse hit lists become one score per hit.

A fusion takes each stage's hits, best first, as ``(id, score)`` pairs, and returns the fused score of every
id found by any stage, in order of first appearance. ``FUSIONS`` maps the domain's ``types.Fusion`` to the
function.

The default (``DEFAULT_FUSION``) is DBSF. On SciFact (809 queries, all-MiniLM-L6-v2 dense + bm25-english sparse) it beat
the better single mode by +0.03 nDCG@10 where RRF gained about +0.01: RRF throws away how far ahead a
confident top hit is, and BM25 is often very confident on this corpus (benchmarks/results/retrieval.md).

    >>> rrf({"dense": [("a", 0.9), ("b", 0.4)], "sparse": [("b", 7.0)]}) == {"a": 1 / 61, "b": 1 / 62 + 1 / 61}
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from genai_retrieval.types import Fusion

Ranked = Sequence[tuple[str, float]]
Fuse = Callable[[Mapping[str, Ranked]], dict[str, float]]

RRF_K = 60


def rrf(stages: Mapping[str, Ranked], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: the sum of ``1 / (k + rank)`` over the stages (rank 1 is the best hit).

    Only ranks count, so scores on different scales (cosine, BM25) mix without tuning.
    """
    fused: dict[str, float] = {}
    for hits in stages.values():
        for rank, (hit_id, _) in enumerate(hits):
            fused[hit_id] = fused.get(hit_id, 0.0) + 1.0 / (k + rank + 1)
    return fused


def dbsf(stages: Mapping[str, Ranked]) -> dict[str, float]:
    """Distribution-based score fusion: each stage's scores scaled by mean ± 3 standard deviations, then summed.

    Per stage, ``(score - (mean - 3σ)) / 6σ`` with the population σ of that stage's hits; 0.5 when σ is 0.
    """
    fused: dict[str, float] = {}
    for hits in stages.values():
        if not hits:
            continue
        scores = [score for _, score in hits]
        mean = sum(scores) / len(scores)
        std = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5
        lo, hi = mean - 3 * std, mean + 3 * std
        for hit_id, score in hits:
            fused[hit_id] = fused.get(hit_id, 0.0) + ((score - lo) / (hi - lo) if hi > lo else 0.5)
    return fused


FUSIONS: dict[Fusion, Fuse] = {
    Fusion.RRF: rrf,
    Fusion.DBSF: dbsf,
}
DEFAULT_FUSION = Fusion.DBSF
