"""Evaluation routes against the real evaluation servicer in-process (over a scripted model), and the
tokenizer probes lm-eval makes against the real tokenizer service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.runner import RunnerSettings
from genai_evaluation.runs import Runs, RunsSettings
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.servicer import service_spec
from genai_evaluation.store import SqliteStore
from genai_evaluation.testing import FakeBackends
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from opentelemetry.sdk.trace import TracerProvider

TASK = {"task": "arith", "output_type": "multiple_choice", "dataset_path": "inline",
        "dataset_kwargs": {"docs": [{"q": f"{i}+1?", "choices": [str(i), str(i + 1)], "label": 1} for i in range(5)]},
        "doc_to_text": "Q: {{q}}\nA:", "doc_to_choice": "choices", "doc_to_target": "label"}


@pytest.fixture(scope="module")
async def http(tokenizer_port, tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    path: Path = tmp_path_factory.mktemp("evaluation")
    store = SqliteStore(path / "e.sqlite3")
    runs = Runs(store, TaskRegistry(store, path), lambda: FakeBackends(), Sandbox(isolate=False),
                RunsSettings(runner=RunnerSettings(batch_size=2)))
    deferred: Deferred[Runs] = Deferred("runs")

    async def ready() -> None:
        runs.start()
        deferred.set(runs)

    async with running_server([service_spec(deferred)], ready=ready) as (server, _):
        settings = GatewaySettings(targets={"tokenizer": f"127.0.0.1:{tokenizer_port}",
                                            "evaluation": f"127.0.0.1:{server.port}"})
        app = build_app(settings, tracer_provider=TracerProvider())
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                         timeout=60) as client:
                yield client
    await runs.stop()
    store.close()


async def test_task_run_events_samples_and_comparison(http):
    created = await http.post("/v1/evaluations/tasks", json={"yaml": yaml.safe_dump(TASK)})
    assert created.status_code == 201, created.text
    assert created.json()["task"]["example_count"] == 5
    run = await http.post("/v1/evaluations/runs", json={"tasks": ["arith"], "labels": {"who": "test"}})
    assert run.status_code == 201, run.text
    run_id = run.json()["run"]["id"]
    events = await http.get(f"/v1/evaluations/runs/{run_id}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in events.text.split("\n\n") if f.strip()]
    assert frames[0].startswith("id: 1\nevent: state_change")
    assert '"STATE_SUCCEEDED"' in frames[-1] and any("event: progress" in f for f in frames)
    resumed = await http.get(f"/v1/evaluations/runs/{run_id}/events", headers={"Last-Event-ID": str(len(frames) - 1)})
    assert [f for f in resumed.text.split("\n\n") if f.strip()] == frames[-1:]
    got = (await http.get(f"/v1/evaluations/runs/{run_id}")).json()["run"]
    assert got["state"] == "STATE_SUCCEEDED" and got["progress"]["examples_done"] == 5
    assert {r["metric"] for r in got["results"]} == {"acc", "acc_norm"}
    samples = (await http.get(f"/v1/evaluations/runs/{run_id}/samples", params={"page_size": 2})).json()
    assert len(samples["samples"]) == 2 and samples["next_page_token"] == "2"
    experiment = await http.post("/v1/evaluations/experiments", json={
        "base": {"tasks": ["arith"]}, "variants": [{"name": "a"}, {"name": "b", "prompt_template": "{{q}}="}]})
    assert experiment.status_code == 201, experiment.text
    ids = [r["id"] for r in experiment.json()["runs"]]
    for rid in ids:
        await http.get(f"/v1/evaluations/runs/{rid}/events")
    compared = await http.post("/v1/evaluations/comparisons", json={"run_ids": ids})
    assert compared.status_code == 200, compared.text
    acc = next(c for c in compared.json()["comparisons"] if c["metric"] == "acc")
    assert acc["paired_count"] == 5 and acc["test"] == "mcnemar-exact"
    listed = (await http.get("/v1/evaluations/runs", params={"state": "succeeded", "task_id": "arith"})).json()
    assert {run_id, *ids} <= {r["id"] for r in listed["runs"]}


async def test_bad_input_is_a_clear_http_error(http):
    bad = await http.post("/v1/evaluations/tasks", json={"yaml": "task: x\noutput_type: guess\n"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "output_type"
    missing = await http.post("/v1/evaluations/runs", json={"tasks": ["no_such_task"]})
    assert missing.status_code == 404 and "no_such_task" in missing.json()["error"]["message"]
    model = await http.post("/v1/evaluations/runs", json={"tasks": ["gsm8k"], "model": "missing"})
    assert model.status_code == 404
    assert (await http.get("/v1/evaluations/runs/run-nope/events")).status_code == 404
    assert (await http.post("/v1/evaluations/runs", json={"tasks": []})).status_code in (400, 422)
    limit = await http.post("/v1/evaluations/runs", json={"tasks": ["gsm8k"], "limit": 0})
    assert limit.status_code in (400, 422)
    state = await http.get("/v1/evaluations/runs", params={"state": "done"})
    assert state.status_code == 400 and state.json()["error"]["param"] == "state"


async def test_lm_eval_tokenizer_probes(http):
    info = (await http.get("/tokenizer_info")).json()
    assert info["eos_token"] == "<|im_end|>" and info["bos_token"] == "<|im_start|>"
    tokens = (await http.post("/tokenize", json={"prompt": "Hello world", "add_special_tokens": False})).json()
    assert tokens["tokens"] == [19556, 905] and tokens["count"] == 2
    text = (await http.post("/detokenize", json={"tokens": [19556, 905]})).json()
    assert text == {"prompt": "Hello world"}
    assert (await http.post("/tokenize", json={"add_special_tokens": False})).status_code in (400, 422)
    await asyncio.sleep(0)
