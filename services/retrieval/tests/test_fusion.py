"""The fusion registry's functions on hand-made ranked lists, checked against values worked out by hand."""

from __future__ import annotations

import pytest
from genai_retrieval.fusion import DEFAULT_FUSION, FUSIONS, RRF_K, dbsf, rrf
from genai_retrieval.types import Fusion

# dense ranks a, b, c; sparse ranks c, d: c is found by both stages.
STAGES = {
    "dense": [("a", 0.9), ("b", 0.5), ("c", 0.1)],
    "sparse": [("c", 4.0), ("d", 2.0)],
}


def _order(fused: dict[str, float]) -> list[str]:
    return sorted(fused, key=lambda hit_id: -fused[hit_id])  # stable, as search sorts: ties keep first appearance


def test_rrf_sums_reciprocal_ranks_with_k_60():
    fused = rrf(STAGES)
    assert RRF_K == 60
    assert list(fused) == ["a", "b", "c", "d"]  # order of first appearance, dense first
    assert fused["a"] == pytest.approx(1 / 61)  # 0.016393
    assert fused["b"] == pytest.approx(1 / 62)  # 0.016129
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)  # 0.032266: third in dense, first in sparse
    assert fused["d"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(0.0322665, abs=1e-7)
    assert _order(fused) == ["c", "a", "b", "d"]  # b and d tie; b was seen first


def test_rrf_ignores_scores_and_takes_k():
    rescaled = {"dense": [("a", 900.0), ("b", -5.0), ("c", -7.0)], "sparse": [("c", 0.01), ("d", 0.0)]}
    assert rrf(rescaled) == rrf(STAGES)
    assert rrf(STAGES, k=0) == pytest.approx({"a": 1.0, "b": 0.5, "c": 1 / 3 + 1.0, "d": 0.5})


def test_dbsf_scales_each_stage_by_mean_and_three_sigma():
    fused = dbsf(STAGES)
    # dense: mean 0.5, population sigma sqrt(0.32 / 3) = 0.326599, range [0.5 - 3 sigma, 0.5 + 3 sigma] of 1.959592
    # sparse: mean 3, sigma 1, range [0, 6]
    assert list(fused) == ["a", "b", "c", "d"]
    assert fused["a"] == pytest.approx(0.704124, abs=1e-6)  # 0.5 + 0.4 / 1.959592
    assert fused["b"] == pytest.approx(0.5)  # the mean maps to the middle
    assert fused["c"] == pytest.approx(0.295876 + 4 / 6, abs=1e-6)  # 0.962543: both stages add up
    assert fused["d"] == pytest.approx(2 / 6)
    assert _order(fused) == ["c", "a", "b", "d"]


def test_dbsf_without_spread_gives_the_middle():
    fused = dbsf({"dense": [("a", 0.7), ("b", 0.7)], "sparse": [("a", 3.0)]})
    assert fused == {"a": 1.0, "b": 0.5}


def test_empty_stages_fuse_to_nothing():
    for fusion in (rrf, dbsf):
        assert fusion({"dense": [], "sparse": []}) == {}
        assert fusion({"dense": [("a", 0.3)], "sparse": []}) == pytest.approx({"a": 1 / 61 if fusion is rrf else 0.5})


def test_registry_covers_every_fusion():
    assert set(FUSIONS) == set(Fusion)  # the API's enum maps onto these: test_convert
    assert FUSIONS[Fusion.RRF] is rrf and FUSIONS[Fusion.DBSF] is dbsf
    assert DEFAULT_FUSION is Fusion.DBSF
