"""The gRPC service in-process, over the real domain (store, datasets, jobs, a worker, the artifact registry)
with a fake of the inference port: a job's whole life, its events as a stream, and bad input as status codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from genai.finetune.v1 import finetune_service_pb2 as pb
from genai.finetune.v1 import finetune_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.status import field_violations
from genai_core.testing import running_server
from genai_finetune.artifacts import Artifacts
from genai_finetune.servicer import Finetune, service_spec
from genai_finetune.testing import FACTS, FakeModelServer, chat, jsonl
from genai_finetune.types import ServiceInfo
from genai_finetune.worker import Worker
from google.protobuf import struct_pb2


@pytest.fixture
async def service(store, datasets, jobs, base_models, data_dir):
    server = FakeModelServer()
    artifacts = Artifacts(store, server, base_models, root=data_dir / "artifacts", jobs_dir=data_dir / "jobs",
                          dataset_sha256=lambda d: datasets.get(d).sha256)
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=3, poll_seconds=0.1)
    info = ServiceInfo("test", base_models.ids, "local", 1, datasets.max_bytes, datasets.max_records)
    deferred: Deferred[Finetune] = Deferred("fine-tune store")
    deferred.set(Finetune(datasets, jobs, artifacts, info, poll_seconds=0.1))
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield pb_grpc.FinetuneServiceStub(channel), worker, artifacts, server


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _train(worker: Worker, artifacts: Artifacts) -> None:
    """What the worker process and the server's monitor do, once."""
    assert await asyncio.to_thread(worker.run_one)
    assert await artifacts.finalize_trained() == 1


async def test_a_lora_job_from_upload_to_served_model(service):
    stub, worker, artifacts, server = service
    dataset = (await stub.CreateDataset(pb.CreateDatasetRequest(filename="facts.jsonl", content=jsonl(FACTS),
                                                                purpose="fine-tune"))).dataset
    assert dataset.format == pb.DATASET_FORMAT_CHAT and dataset.record_count == 8 and dataset.token_count > 0
    config = struct_pb2.Struct()
    config.update({"rank": 4})
    job = (await stub.CreateTuningJob(pb.CreateTuningJobRequest(
        base_model="tiny", training_dataset_id=dataset.id, suffix="facts", method_config=config,
        hyperparameters=pb.Hyperparameters(n_epochs=2, checkpoint_steps=2), seed=5))).job
    assert job.state == pb.TuningJob.STATE_QUEUED and job.method == "lora" and job.seed == 5
    assert job.hyperparameters.batch_size == 4 and job.hyperparameters.learning_rate == pytest.approx(1e-3)

    stream = stub.StreamTuningJobEvents(pb.StreamTuningJobEventsRequest(job_id=job.id))
    events = asyncio.ensure_future(_collect(stream))
    await _train(worker, artifacts)
    streamed = await asyncio.wait_for(events, 30)
    assert [e.sequence for e in streamed] == list(range(1, len(streamed) + 1))  # no gaps, no repeats
    assert streamed[-1].state == pb.TuningJob.STATE_SUCCEEDED  # the stream ends with the terminal event
    assert any(e.type == pb.TuningJobEvent.TYPE_METRICS and e.metrics.HasField("train_loss") for e in streamed)

    done = (await stub.GetTuningJob(pb.GetTuningJobRequest(job_id=job.id))).job
    name = f"ft:tiny:facts:{job.id}"
    assert done.state == pb.TuningJob.STATE_SUCCEEDED and done.fine_tuned_model == name
    assert done.trained_tokens > 0 and done.progress.step == done.progress.total_steps == 4
    assert server.served_ids == {name: "adapter"}  # served before the job said it succeeded
    artifact = (await stub.GetArtifact(pb.GetArtifactRequest(artifact_id=name))).artifact
    assert artifact.id == done.artifact_id and artifact.served and artifact.kind == pb.Artifact.KIND_ADAPTER
    assert artifact.dataset_sha256 == dataset.sha256 and artifact.format == "peft-lora" and artifact.size_bytes > 0
    assert Path(artifact.path, "artifact.json").exists()

    newest = await stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(job_id=job.id, page_size=3))
    assert [e.sequence for e in newest.events] == [len(streamed), len(streamed) - 1, len(streamed) - 2]
    assert newest.has_more
    checkpoints = (await stub.ListTuningJobCheckpoints(pb.ListTuningJobCheckpointsRequest(job_id=job.id))).checkpoints
    assert [c.step for c in checkpoints] == [4, 2]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{name}:ckpt-step-4"

    refused = await _error(stub.CancelTuningJob(pb.CancelTuningJobRequest(job_id=job.id)))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "succeeded" in refused.details()
    replay = await _collect(stub.StreamTuningJobEvents(pb.StreamTuningJobEventsRequest(job_id=job.id,
                                                                                      after_sequence=3)))
    assert [e.sequence for e in replay] == list(range(4, len(streamed) + 1))

    deleted = (await stub.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=name))).artifact
    assert deleted.id == artifact.id and server.served_ids == {} and not Path(artifact.path).exists()
    gone = await _error(stub.GetArtifact(pb.GetArtifactRequest(artifact_id=artifact.id)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def _collect(stream) -> list:
    return [reply.event async for reply in stream]


async def test_results_wait_for_an_inference_service_that_is_down(service):
    stub, worker, artifacts, server = service
    dataset = (await stub.CreateDataset(pb.CreateDatasetRequest(filename="f.jsonl", content=jsonl(FACTS)))).dataset
    config = struct_pb2.Struct()
    config.update({"num_virtual_tokens": 4})
    job = (await stub.CreateTuningJob(pb.CreateTuningJobRequest(
        base_model="tiny", training_dataset_id=dataset.id, method="prefix_tuning", method_config=config,
        hyperparameters=pb.Hyperparameters(n_epochs=1)))).job
    server.down = True
    await _train(worker, artifacts)
    done = (await stub.GetTuningJob(pb.GetTuningJobRequest(job_id=job.id))).job
    assert done.state == pb.TuningJob.STATE_SUCCEEDED  # trained and registered all the same
    artifact = (await stub.GetArtifact(pb.GetArtifactRequest(artifact_id=done.artifact_id))).artifact
    assert not artifact.served and artifact.serving == "model"
    events = (await stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(job_id=job.id))).events
    assert any("could not load the model yet" in e.message for e in events)
    blocked = await _error(stub.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=artifact.id)))
    assert blocked.code() == grpc.StatusCode.UNAVAILABLE  # nothing deleted while it cannot be unloaded
    server.down = False
    assert await artifacts.reconcile() == 1  # the monitor's next round loads it
    assert server.served_ids == {done.fine_tuned_model: "model"}
    assert (await stub.GetArtifact(pb.GetArtifactRequest(artifact_id=artifact.id))).artifact.served


async def test_bad_input_is_a_clear_status(service, datasets):
    stub, *_ = service
    bad = await _error(stub.CreateDataset(pb.CreateDatasetRequest(
        filename="bad.jsonl", content=b'{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(bad)] == ["line[1].messages", "line[2]"]
    large = await _error(stub.CreateDataset(pb.CreateDatasetRequest(filename="big.jsonl",
                                                                    content=b"x" * (datasets.max_bytes + 1))))
    assert large.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is" in large.details()
    empty = await _error(stub.CreateDataset(pb.CreateDatasetRequest(filename="none.jsonl")))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT

    dataset = (await stub.CreateDataset(pb.CreateDatasetRequest(filename="f.jsonl",
                                                                content=jsonl([chat("q", "a")])))).dataset
    unknown = await _error(stub.CreateTuningJob(pb.CreateTuningJobRequest(base_model="gpt-9",
                                                                          training_dataset_id=dataset.id)))
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(unknown)] == ["base_model"]
    await stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset.id))
    deleted = await _error(stub.CreateTuningJob(pb.CreateTuningJobRequest(base_model="tiny",
                                                                          training_dataset_id=dataset.id)))
    assert deleted.code() == grpc.StatusCode.NOT_FOUND
    assert [f for f, _ in field_violations(deleted)] == ["training_dataset_id"]
    assert (await stub.ListTuningJobs(pb.ListTuningJobsRequest())).jobs == []  # nothing half-created
    missing = await _error(stub.GetTuningJob(pb.GetTuningJobRequest(job_id="ftjob-nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    too_big = await _error(stub.ListTuningJobs(pb.ListTuningJobsRequest(page_size=1000)))
    assert too_big.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_info_lists_base_models_and_methods(service):
    stub, *_ = service
    info = await stub.GetInfo(pb.GetInfoRequest(request_id="i-1"))
    assert info.request_id == "i-1" and "tiny" in info.base_models and info.runner == "local"
    methods = {m.name: m for m in info.methods}
    assert {"lora", "prompt_tuning", "prefix_tuning", "full", "dpo", "reward_model"} <= set(methods)
    assert methods["dpo"].dataset_formats == [pb.DATASET_FORMAT_PREFERENCE]
    assert methods["lora"].default_config.fields["rank"].number_value == 8
    assert methods["reward_model"].artifact_kind == pb.Artifact.KIND_REWARD_MODEL


async def test_a_run_that_breaks_fails_the_job_with_its_reason(service, datasets, data_dir):
    stub, worker, artifacts, server = service
    dataset = (await stub.CreateDataset(pb.CreateDatasetRequest(filename="f.jsonl", content=jsonl(FACTS)))).dataset
    job = (await stub.CreateTuningJob(pb.CreateTuningJobRequest(base_model="tiny", training_dataset_id=dataset.id))).job
    datasets.path(datasets.get(dataset.id)).unlink()  # the stored file vanished under the job
    assert await asyncio.to_thread(worker.run_one)
    failed = (await stub.GetTuningJob(pb.GetTuningJobRequest(job_id=job.id))).job
    assert failed.state == pb.TuningJob.STATE_FAILED and failed.error.reason == "TRAINING_FAILED"
    assert failed.error.message.startswith("training failed: FileNotFoundError")
    streamed = await _collect(stub.StreamTuningJobEvents(pb.StreamTuningJobEventsRequest(job_id=job.id)))
    assert streamed[-1].state == pb.TuningJob.STATE_FAILED and streamed[-1].level == pb.TuningJobEvent.LEVEL_ERROR
    assert not (data_dir / "jobs" / job.id).exists() and server.served_ids == {}
    assert (await stub.ListArtifacts(pb.ListArtifactsRequest(job_id=job.id))).artifacts == []
