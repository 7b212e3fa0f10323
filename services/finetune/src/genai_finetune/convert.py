"""The fine-tune service's protobuf <-> domain types, both directions. Nothing else touches protobuf."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from genai.finetune.v1 import finetune_service_pb2 as pb
from genai.type.v1 import error_pb2
from genai_core.errors import InvalidArgument
from genai_core.structs import struct_to_dict
from google.protobuf import struct_pb2, timestamp_pb2

from genai_finetune.jobs import JobRequest
from genai_finetune.methods import Method
from genai_finetune.types import (
    Artifact,
    ArtifactKind,
    Checkpoint,
    Dataset,
    DatasetFormat,
    Event,
    EventType,
    Hyperparameters,
    Job,
    JobState,
    Level,
    Metrics,
)

FORMATS = {
    pb.DATASET_FORMAT_CHAT: DatasetFormat.CHAT,
    pb.DATASET_FORMAT_COMPLETION: DatasetFormat.COMPLETION,
    pb.DATASET_FORMAT_PREFERENCE: DatasetFormat.PREFERENCE,
    pb.DATASET_FORMAT_TEXT: DatasetFormat.TEXT,
    pb.DATASET_FORMAT_PAIRS: DatasetFormat.PAIRS,
    pb.DATASET_FORMAT_IMAGE: DatasetFormat.IMAGE,
}
FORMATS_PB = {v: k for k, v in FORMATS.items()}
STATES = {
    pb.TuningJob.STATE_VALIDATING_FILES: JobState.VALIDATING_FILES,
    pb.TuningJob.STATE_QUEUED: JobState.QUEUED,
    pb.TuningJob.STATE_RUNNING: JobState.RUNNING,
    pb.TuningJob.STATE_SUCCEEDED: JobState.SUCCEEDED,
    pb.TuningJob.STATE_FAILED: JobState.FAILED,
    pb.TuningJob.STATE_CANCELLED: JobState.CANCELLED,
    pb.TuningJob.STATE_PAUSED: JobState.PAUSED,
}
STATES_PB = {v: k for k, v in STATES.items()}
KINDS_PB = {ArtifactKind.ADAPTER: pb.Artifact.KIND_ADAPTER, ArtifactKind.MODEL: pb.Artifact.KIND_MODEL,
            ArtifactKind.REWARD_MODEL: pb.Artifact.KIND_REWARD_MODEL}
LEVELS_PB = {Level.INFO: pb.TuningJobEvent.LEVEL_INFO, Level.WARNING: pb.TuningJobEvent.LEVEL_WARNING,
             Level.ERROR: pb.TuningJobEvent.LEVEL_ERROR}
TYPES_PB = {EventType.MESSAGE: pb.TuningJobEvent.TYPE_MESSAGE, EventType.METRICS: pb.TuningJobEvent.TYPE_METRICS}
_HYPER = [f.name for f in fields(Hyperparameters)]


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


# -- requests ------------------------------------------------------------------------------------------


def dataset_format(value: int) -> DatasetFormat | None:
    if value == pb.DATASET_FORMAT_UNSPECIFIED:
        return None
    if value not in FORMATS:
        raise InvalidArgument.for_field("format", f"unknown dataset format {value}")
    return FORMATS[value]


def job_state(value: int) -> JobState | None:
    if value == pb.TuningJob.STATE_UNSPECIFIED:
        return None
    if value not in STATES:
        raise InvalidArgument.for_field("state", f"unknown job state {value}")
    return STATES[value]


def hyperparameters(h: pb.Hyperparameters) -> Hyperparameters:
    values = {name: getattr(h, name) for name in _HYPER if name != "lr_scheduler" and h.HasField(name)}
    return Hyperparameters(**values, lr_scheduler=h.lr_scheduler or None)


def job_request(request: pb.CreateTuningJobRequest) -> JobRequest:
    return JobRequest(
        base_model=request.base_model,
        training_dataset_id=request.training_dataset_id,
        validation_dataset_id=request.validation_dataset_id,
        method=request.method,
        method_config=struct_to_dict(request.method_config) if request.HasField("method_config") else {},
        hyperparameters=hyperparameters(request.hyperparameters),
        suffix=request.suffix,
        metadata=dict(request.metadata),
        seed=request.seed if request.HasField("seed") else None,
    )


# -- responses -----------------------------------------------------------------------------------------


def hyperparameters_pb(h: Hyperparameters) -> pb.Hyperparameters:
    out = pb.Hyperparameters(lr_scheduler=h.lr_scheduler or "")
    for name in _HYPER:
        value = getattr(h, name)
        if name != "lr_scheduler" and value is not None:
            setattr(out, name, value)
    return out


def metrics_pb(m: Metrics) -> pb.TrainingMetrics:
    out = pb.TrainingMetrics(step=m.step, total_steps=m.total_steps, epoch=m.epoch, trained_tokens=m.trained_tokens,
                             extra=m.extra)
    for name in ("train_loss", "eval_loss", "learning_rate", "tokens_per_second", "eta_seconds"):
        value = getattr(m, name)
        if value is not None:
            setattr(out, name, value)
    return out


def dataset_pb(d: Dataset) -> pb.Dataset:
    return pb.Dataset(id=d.id, filename=d.filename, purpose=d.purpose, format=FORMATS_PB[d.format],
                      record_count=d.record_count, size_bytes=d.size_bytes, sha256=d.sha256, token_count=d.token_count,
                      create_time=_timestamp(d.created_at))


def job_pb(job: Job) -> pb.TuningJob:
    out = pb.TuningJob(
        id=job.id, base_model=job.base_model, training_dataset_id=job.training_dataset_id,
        validation_dataset_id=job.validation_dataset_id, method=job.method, method_config=_struct(job.method_config),
        hyperparameters=hyperparameters_pb(job.hyperparameters), suffix=job.suffix, metadata=job.metadata,
        seed=job.seed, state=STATES_PB[job.state], progress=metrics_pb(job.progress),
        fine_tuned_model=job.fine_tuned_model, artifact_id=job.artifact_id, trained_tokens=job.trained_tokens,
        last_sequence=job.last_sequence, create_time=_timestamp(job.created_at),
        start_time=_timestamp(job.started_at), end_time=_timestamp(job.finished_at),
    )
    if job.error is not None:
        out.error.CopyFrom(error_pb2.ErrorDetail(code=job.error.code, reason=job.error.reason or job.error.code,
                                                 message=job.error.message))
    eta = job.progress.eta_seconds
    if job.state is JobState.RUNNING and eta is not None and job.progress_at is not None:
        out.estimated_finish_time.CopyFrom(_timestamp(job.progress_at + eta))
    return out


def event_pb(e: Event) -> pb.TuningJobEvent:
    out = pb.TuningJobEvent(id=e.id, sequence=e.sequence, job_id=e.job_id, create_time=_timestamp(e.created_at),
                            level=LEVELS_PB[e.level], type=TYPES_PB[e.type], message=e.message,
                            state=STATES_PB[e.state] if e.state else pb.TuningJob.STATE_UNSPECIFIED,
                            data=_struct(e.data))
    if e.metrics is not None:
        out.metrics.CopyFrom(metrics_pb(e.metrics))
    return out


def checkpoint_pb(c: Checkpoint) -> pb.Checkpoint:
    return pb.Checkpoint(id=c.id, job_id=c.job_id, step=c.step, fine_tuned_model_checkpoint=c.fine_tuned_model_checkpoint,
                         metrics=metrics_pb(c.metrics), create_time=_timestamp(c.created_at))


def artifact_pb(a: Artifact) -> pb.Artifact:
    return pb.Artifact(
        id=a.id, kind=KINDS_PB[a.kind], job_id=a.job_id, method=a.method, base_model=a.base_model,
        base_model_revision=a.base_model_revision, dataset_sha256=a.dataset_sha256, path=a.path, format=a.format,
        size_bytes=a.size_bytes, model_id=a.model_id, serving=a.serving.value, served=a.served,
        metrics=_struct({k: v for k, v in a.metrics.items() if v is not None}), config=_struct(a.config),
        create_time=_timestamp(a.created_at),
    )


def method_pb(m: Method) -> pb.MethodInfo:
    return pb.MethodInfo(name=m.name, description=m.description,
                         dataset_formats=sorted(FORMATS_PB[f] for f in m.formats), artifact_kind=KINDS_PB[m.kind],
                         default_config=_struct(m.default_config()), default_hyperparameters=hyperparameters_pb(m.defaults))
