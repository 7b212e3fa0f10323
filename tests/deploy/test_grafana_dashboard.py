"""deploy/grafana/genai-dashboard.json: valid Grafana JSON whose every query names metrics and labels that the
services really export (read from the metric classes the services register, not from a list kept here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from genai_core.metrics import GrpcMetrics
from genai_embedding.metrics import EmbeddingMetrics
from genai_gateway.middleware import HttpMetrics
from genai_inference.metrics import InferenceMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "genai-dashboard.json"
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
METRIC = re.compile(r"\bgenai_[a-z0-9_]+\b")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHER = re.compile(r"\{([^}]*)\}")


def _exported() -> dict[str, set[str]]:
    """Every sample name a service exposes -> its label names (``le`` for histogram buckets)."""
    holders = [GrpcMetrics("svc"), HttpMetrics(), InferenceMetrics(CollectorRegistry()),
               EmbeddingMetrics(CollectorRegistry())]
    found: dict[str, set[str]] = {}
    for holder in holders:
        for metric in vars(holder).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            for suffix in SUFFIXES[metric._type]:
                labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                found[f"{metric._name}{suffix}"] = labels
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard: dict) -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


def test_the_dashboard_is_grafana_json(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["description"], p["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]


def test_every_query_uses_exported_metrics_and_labels(dashboard):
    exported = _exported()
    for title, target in _targets(dashboard):
        expr = target["expr"]
        metrics = METRIC.findall(expr)
        assert metrics, f"{title}: no platform metric in {expr}"
        unknown = [m for m in metrics if m not in exported]
        assert not unknown, f"{title}: {unknown} are not exported; known: {sorted(exported)}"
        labels = set().union(*(exported[m] for m in metrics))
        used = {name.strip() for group in BY.findall(expr) for name in group.split(",") if name.strip()}
        used |= {m.split("=")[0].strip() for group in MATCHER.findall(expr) for m in group.split(",") if "=" in m}
        used |= set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
        assert used <= labels, f"{title}: labels {sorted(used - labels)} do not exist on {metrics}"


@pytest.mark.parametrize("metric", [
    "genai_inference_time_to_first_token_seconds_bucket",  # TTFT
    "genai_inference_inter_token_latency_seconds_bucket",  # ITL
    "genai_inference_queue_depth",  # queue depth
    "genai_inference_batch_size_bucket",  # batch size
    "genai_inference_generated_tokens_total",  # tokens/s
    "genai_embedding_forward_texts_bucket",  # embedding batch sizes
    "genai_stage_duration_seconds_bucket",  # retrieval latency per stage
])
def test_the_dashboard_shows_what_operators_watch(dashboard, metric):
    assert any(metric in target["expr"] for _, target in _targets(dashboard))
