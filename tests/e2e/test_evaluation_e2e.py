"""End to end: evaluation runs against the real suite, lm-evaluation-harness against our gateway (the same
scores as the service on the same task), resume after kill -9, traces joined with the inference service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from genai_evaluation import datasets, lmeval
from genai_evaluation.registry import builtin_tasks

from tests.support.processes import free_port, log_tail, start_service, stop, wait_grpc_serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"
LM_EVAL = str(Path(sys.executable).parent / "lm_eval")


def _create(suite, body: dict, base: str | None = None) -> dict:
    reply = httpx.post(f"{base or suite.base_url}/v1/evaluations/runs", json=body, timeout=60)
    assert reply.status_code == 201, reply.text
    return reply.json()["run"]


def _finish(suite, run_id: str, timeout: float = 600) -> dict:
    """Follow the run's SSE events to the end; return the run."""
    with httpx.stream("GET", f"{suite.base_url}/v1/evaluations/runs/{run_id}/events", timeout=timeout) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        kinds = [line.split(": ", 1)[1] for line in events.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "state_change" and kinds[-1] == "state_change" and "progress" in kinds
    return httpx.get(f"{suite.base_url}/v1/evaluations/runs/{run_id}", timeout=30).json()["run"]


def _samples(base: str, run_id: str) -> list[dict]:
    return httpx.get(f"{base}/v1/evaluations/runs/{run_id}/samples", params={"page_size": 1000},
                     timeout=30).json()["samples"]


def _lm_eval(args: list[str], out: Path, env: dict | None = None) -> dict:
    command = [LM_EVAL, *args, "--output_path", str(out), "--log_samples"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    return {"results": results["results"], "samples": [json.loads(line) for path in out.rglob("samples_*.jsonl")
                                                       for line in path.read_text().splitlines()]}


def test_lm_eval_local_completions_matches_the_service(suite, tmp_path):
    task = builtin_tasks()["gpqa_diamond"]
    docs = datasets.load(task.dataset, tmp_path)
    limit = 3
    name, include = lmeval.export(task, docs, tmp_path / "tasks")
    # lm-eval detects our /tokenizer_info + /tokenize and tokenizes remotely: no tokenizer download.
    theirs = _lm_eval(["--model", "local-completions", "--model_args",
                       f"model={MODEL},base_url={suite.base_url}/v1/completions,max_retries=1", "--batch_size", "4",
                       "--tasks", name, "--include_path", str(include), "--limit", str(limit)], tmp_path / "out")
    run = _finish(suite, _create(suite, {"tasks": ["gpqa_diamond"], "limit": limit})["id"])
    assert run["state"] == "STATE_SUCCEEDED"
    ours = {r["metric"]: r["value"] for r in run["results"]}
    assert ours["acc"] == pytest.approx(theirs["results"][name]["acc,none"])
    assert ours["acc_norm"] == pytest.approx(theirs["results"][name]["acc_norm,none"])
    lm_lls = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in theirs["samples"]}
    for sample in _samples(suite.base_url, run["id"]):
        assert sample["loglikelihoods"] == pytest.approx(lm_lls[sample["example_index"]], abs=1e-4)


def test_lm_eval_local_chat_completions_generates(suite, tmp_path):
    task = builtin_tasks()["gsm8k"]
    docs = datasets.load(task.dataset, tmp_path)
    name, include = lmeval.export(task, docs, tmp_path / "tasks")
    out = _lm_eval(["--model", "local-chat-completions", "--model_args",
                    f"model={MODEL},base_url={suite.base_url}/v1/chat/completions,max_retries=1",
                    "--tasks", name, "--include_path", str(include), "--num_fewshot", "0", "--limit", "2",
                    "--apply_chat_template", "--gen_kwargs", "max_gen_toks=24"], tmp_path / "out")
    assert {s["doc_id"] for s in out["samples"]} == {0, 1}  # one record per document and filter
    assert all(s["resps"][0][0].strip() for s in out["samples"])  # the model answered through our gateway
    assert "exact_match,strict-match" in out["results"][name]


def test_tasks_runs_traces_and_bad_input(suite):
    tasks = {t["id"]: t for t in httpx.get(f"{suite.base_url}/v1/evaluations/tasks", timeout=60).json()["tasks"]}
    assert {"gsm8k", "gsm8k_ppl", "gpqa_diamond", "humaneval", "facts_rag", "facts_retrieval"} <= set(tasks)
    run = _finish(suite, _create(suite, {"tasks": ["gsm8k_ppl", "humaneval"], "limit": 2, "max_new_tokens": 48})["id"])
    assert run["state"] == "STATE_SUCCEEDED", run
    metrics = {(r["task_id"], r["metric"]) for r in run["results"]}
    assert {("gsm8k_ppl", "token_perplexity"), ("humaneval", "pass@1")} <= metrics
    samples = _samples(suite.base_url, run["id"])
    code = [s for s in samples if s["task_id"] == "humaneval"]
    assert all(s["execution_results"] and s["execution_results"][0] for s in code)
    trace_id = samples[0]["trace_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "inference" not in {s.service for s in suite.sink.spans(trace_id)}:
        time.sleep(0.2)
    assert {"evaluation", "inference"} <= {s.service for s in suite.sink.spans(trace_id)}

    bad = httpx.post(f"{suite.base_url}/v1/evaluations/tasks", json={"yaml": "task: t\noutput_type: mc\n"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "output_type"
    for body, status in (({"tasks": ["nope"]}, 404), ({"tasks": ["gsm8k"], "model": "no-such-model"}, 404),
                         ({"tasks": ["facts_retrieval"], "collection": "no-such-collection"}, 404)):
        reply = httpx.post(f"{suite.base_url}/v1/evaluations/runs", json=body, timeout=60)
        assert reply.status_code == status, reply.text
    assert httpx.get(f"{suite.base_url}/readyz").status_code == 200


def test_dense_vs_hybrid_experiment_and_comparison(suite):
    reply = httpx.post(f"{suite.base_url}/v1/evaluations/experiments", timeout=60, json={
        "base": {"tasks": ["facts_retrieval"]},
        "variants": [{"name": "dense", "search_mode": "dense"}, {"name": "hybrid", "search_mode": "hybrid"}]})
    assert reply.status_code == 201, reply.text
    runs = [_finish(suite, r["id"]) for r in reply.json()["runs"]]
    assert all(r["state"] == "STATE_SUCCEEDED" for r in runs)
    compared = httpx.post(f"{suite.base_url}/v1/evaluations/comparisons", timeout=60,
                          json={"run_ids": [r["id"] for r in runs], "include_differences": True}).json()
    mrr = next(c for c in compared["comparisons"] if c["metric"] == "mrr")
    assert mrr["paired_count"] == 12 and len(mrr["differences"]) == 12 and mrr["ci_lower"] <= mrr["ci_upper"]


def test_a_killed_service_resumes_the_run_without_rescoring(suite, tmp_path):
    port = free_port()
    env = {key: value for key, value in suite._env.items() if key.startswith("GENAI_EVALUATION_")}
    env.update({"GENAI_EVALUATION_PORT": str(port), "GENAI_EVALUATION_METRICS_PORT": "0",
                "GENAI_EVALUATION_DATA_DIR": str(tmp_path / "data"), "GENAI_EVALUATION_BATCH_SIZE": "2",
                "GENAI_EVALUATION_MAX_INFLIGHT": "1", "PATH": suite._env["PATH"]})
    log = tmp_path / "evaluation.log"
    import grpc
    from genai.evaluation.v1 import evaluation_service_pb2 as pb
    from genai.evaluation.v1 import evaluation_service_pb2_grpc as pb_grpc

    proc = start_service("genai_evaluation", env, log)
    try:
        wait_grpc_serving(f"127.0.0.1:{port}", 60, proc=proc, log_path=log)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.EvaluationServiceStub(channel)
            run = stub.CreateEvaluationRun(pb.CreateEvaluationRunRequest(
                spec=pb.EvaluationRunSpec(task_ids=["gsm8k_ppl"], limit=40)), timeout=30).run
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                scored = stub.ListEvaluationSamples(pb.ListEvaluationSamplesRequest(run_id=run.id), timeout=30).samples
                if len(scored) >= 4:
                    break
                time.sleep(0.1)
        before = {s.example_index: s.trace_id for s in scored}
        assert 4 <= len(before) < 40, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = start_service("genai_evaluation", env, log)
        wait_grpc_serving(f"127.0.0.1:{port}", 60, proc=proc, log_path=log)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.EvaluationServiceStub(channel)
            events = list(stub.StreamEvaluationRunEvents(pb.StreamEvaluationRunEventsRequest(run_id=run.id),
                                                         timeout=300))
            assert events[-1].event.state_change.state == pb.EvaluationRun.STATE_SUCCEEDED, log_tail(log)
            done = stub.GetEvaluationRun(pb.GetEvaluationRunRequest(run_id=run.id), timeout=30).run
            after = {s.example_index: s.trace_id for s in stub.ListEvaluationSamples(
                pb.ListEvaluationSamplesRequest(run_id=run.id), timeout=30).samples}
        assert done.resume_count == 1 and done.progress.examples_done == 40
        assert sorted(after) == list(range(40))
        # the samples scored before the kill are the same records: not scored again
        assert all(after[i] == trace for i, trace in before.items())
    finally:
        assert stop(proc, 30) is not None, log_tail(log)


def test_an_openai_compatible_endpoint_scores_like_the_inference_service(suite):
    """The model under test can be any OpenAI-compatible server: here our own gateway, which must give the
    same log-likelihoods as the inference service (lm-eval's request shapes, remote tokenizer routes)."""
    endpoint = {"base_url": f"{suite.base_url}/v1", "model": MODEL, "api_key": "secret-key"}
    direct = _finish(suite, _create(suite, {"tasks": ["gpqa_diamond"], "limit": 2})["id"])
    remote = _finish(suite, _create(suite, {"tasks": ["gpqa_diamond"], "limit": 2, "endpoint": endpoint})["id"])
    assert remote["state"] == "STATE_SUCCEEDED", remote
    assert remote["spec"]["model"]["endpoint"]["api_key"] == ""  # stored to resume, never returned
    for a, b in zip(_samples(suite.base_url, direct["id"]), _samples(suite.base_url, remote["id"]), strict=True):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)
