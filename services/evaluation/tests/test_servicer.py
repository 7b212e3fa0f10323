"""The gRPC API in-process, over fakes of the model: tasks, runs, events, samples, experiments, comparisons,
and bad input answered with the right status and the field to fix."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from genai.evaluation.v1 import evaluation_service_pb2 as pb
from genai.evaluation.v1 import evaluation_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.status import field_violations
from genai_core.testing import running_server
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.runner import RunnerSettings
from genai_evaluation.runs import Runs, RunsSettings
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.servicer import service_spec
from genai_evaluation.store import SqliteStore
from genai_evaluation.testing import FakeBackends

TASK = {"task": "arith", "output_type": "multiple_choice", "dataset_path": "inline",
        "dataset_kwargs": {"docs": [{"q": f"{i}+1?", "choices": [str(i), str(i + 1)], "label": 1} for i in range(6)]},
        "doc_to_text": "Q: {{q}}\nA:", "doc_to_choice": "choices", "doc_to_target": "label"}


@pytest.fixture
async def stub(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite3")
    runs = Runs(store, TaskRegistry(store, Path(tmp_path)), lambda: FakeBackends(), Sandbox(isolate=False),
                RunsSettings(max_concurrent_runs=2, runner=RunnerSettings(batch_size=2)))
    deferred: Deferred[Runs] = Deferred("runs")

    async def ready() -> None:
        runs.start()
        deferred.set(runs)

    async with running_server([service_spec(deferred)], ready=ready) as (_, channel):
        yield pb_grpc.EvaluationServiceStub(channel)
    await runs.stop()
    store.close()


async def _bad(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_tasks_runs_events_samples_and_comparisons(stub):
    info = await stub.GetInfo(pb.GetInfoRequest())
    assert info.store == "sqlite" and info.engine == "genai-evaluation"
    created = await stub.CreateTask(pb.CreateTaskRequest(yaml=yaml.safe_dump(TASK)))
    assert created.task.id == "arith" and created.task.example_count == 6 and created.task.origin == "registered"
    assert created.task.output_type == pb.OUTPUT_TYPE_MULTIPLE_CHOICE
    listed = await stub.ListTasks(pb.ListTasksRequest(output_type=pb.OUTPUT_TYPE_MULTIPLE_CHOICE))
    assert "arith" in [t.id for t in listed.tasks] and "gpqa_diamond" in [t.id for t in listed.tasks]
    metrics = await stub.ListMetrics(pb.ListMetricsRequest(output_type=pb.OUTPUT_TYPE_RAG))
    assert {"faithfulness", "answer_similarity"} <= {m.name for m in metrics.metrics}

    spec = pb.EvaluationRunSpec(task_ids=["arith"], labels={"team": "eval"})
    run = (await stub.CreateEvaluationRun(pb.CreateEvaluationRunRequest(spec=spec))).run
    assert run.state == pb.EvaluationRun.STATE_QUEUED and run.spec.labels["team"] == "eval"
    events = [m.event async for m in stub.StreamEvaluationRunEvents(pb.StreamEvaluationRunEventsRequest(run_id=run.id))]
    assert events[-1].state_change.state == pb.EvaluationRun.STATE_SUCCEEDED
    assert any(e.HasField("progress") for e in events) and any(e.HasField("task_complete") for e in events)
    done = (await stub.GetEvaluationRun(pb.GetEvaluationRunRequest(run_id=run.id))).run
    assert {r.metric for r in done.results} == {"acc", "acc_norm"} and done.progress.examples_done == 6
    page = await stub.ListEvaluationSamples(pb.ListEvaluationSamplesRequest(run_id=run.id, page_size=4))
    assert [s.example_index for s in page.samples] == [0, 1, 2, 3] and page.next_page_token
    rest = await stub.ListEvaluationSamples(pb.ListEvaluationSamplesRequest(run_id=run.id, page_token=page.next_page_token))
    assert [s.example_index for s in rest.samples] == [4, 5] and not rest.next_page_token
    assert len(page.samples[0].loglikelihoods) == 2

    experiment = await stub.CreateExperiment(pb.CreateExperimentRequest(base=spec, variants=[
        pb.Variant(name="a", prompt_template="Q: {{q}}\nA:"), pb.Variant(name="b", prompt_template="{{q}} =")]))
    ids = [r.id for r in experiment.runs]
    for run_id in ids:
        [m async for m in stub.StreamEvaluationRunEvents(pb.StreamEvaluationRunEventsRequest(run_id=run_id))]
    compared = await stub.CompareEvaluationRuns(pb.CompareEvaluationRunsRequest(run_ids=ids, include_differences=True))
    acc = next(c for c in compared.comparisons if c.metric == "acc")
    assert acc.paired_count == 6 and len(acc.differences) == 6 and acc.test == "mcnemar-exact"
    by_experiment = await stub.ListEvaluationRuns(pb.ListEvaluationRunsRequest(experiment_id=experiment.experiment_id))
    assert {r.variant for r in by_experiment.runs} == {"a", "b"}


async def test_bad_input_gets_the_right_status_and_field(stub):
    bad_yaml = yaml.safe_dump({**TASK, "metric_list": [{"metric": "bleu"}]})
    error = await _bad(stub.CreateTask(pb.CreateTaskRequest(yaml=bad_yaml)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error)[0][0] == "metric_list[0].metric" and "unknown metric" in error.details()
    error = await _bad(stub.CreateTask(pb.CreateTaskRequest(yaml="task: [")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(error)[0][0] == "yaml"
    error = await _bad(stub.CreateEvaluationRun(pb.CreateEvaluationRunRequest(
        spec=pb.EvaluationRunSpec(task_ids=["no_such_task"]))))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no_such_task" in error.details()
    error = await _bad(stub.CreateEvaluationRun(pb.CreateEvaluationRunRequest(
        spec=pb.EvaluationRunSpec(task_ids=["gsm8k"], model=pb.ModelRef(inference_model="missing")))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await _bad(stub.CreateEvaluationRun(pb.CreateEvaluationRunRequest(spec=pb.EvaluationRunSpec())))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(error)[0][0] == "spec.task_ids"
    error = await _bad(stub.GetEvaluationRun(pb.GetEvaluationRunRequest(run_id="run-nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await _bad(stub.CreateTask(pb.CreateTaskRequest(yaml=yaml.safe_dump({**TASK, "task": "gsm8k"}))))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
