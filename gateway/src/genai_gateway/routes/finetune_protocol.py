"""HTTP shapes of the fine-tuning routes: OpenAI's files and fine_tuning.jobs objects (the official SDK reads
them), with our additions as extra fields, and the native routes' bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------------------


class MethodSettings(_Open):
    """``method.<type>``: OpenAI's ``hyperparameters`` (each "auto" or a value) plus, for our methods, their own
    settings in the same object (``rank``, ``alpha``, ``num_virtual_tokens``, ``beta``, ...)."""

    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class Method(_Open):
    """OpenAI's ``method``: ``{"type": "supervised" | "dpo", "<type>": {"hyperparameters": {...}}}``. Extension:
    ``type`` may name any method of ``GET /v1/finetune/info`` ("lora", "prompt_tuning", "prefix_tuning",
    "full", "reward_model"); "supervised" is LoRA."""

    type: str = Field(description="supervised (LoRA), dpo, or a method of GET /v1/finetune/info")


class JobCreate(_Strict):
    model: str = Field(description="the base model, one of GET /v1/finetune/info' base_models")
    training_file: str = Field(description="a file id from POST /v1/files (purpose fine-tune)")
    validation_file: str | None = None
    hyperparameters: dict[str, Any] | None = Field(
        None, description="deprecated by OpenAI in favour of method.<type>.hyperparameters; used when method is unset")
    method: Method | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = Field(None, description="not supported; must be empty")


class NativeJobCreate(_Strict):
    """The native route: the gRPC request's fields, by their proto names."""

    base_model: str = Field("", description="the model to tune; empty for methods that start from scratch")
    training_dataset_id: str
    validation_dataset_id: str = ""
    method: str = Field("", description="a method of GET /v1/finetune/info; empty is lora")
    method_config: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    suffix: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    seed: int | None = Field(None, ge=0)


# -- responses -----------------------------------------------------------------------------------------


class FileObject(_Open):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None


class FileList(_Open):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FineTuningJob(_Open):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str = "genai"
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: str
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    method: dict[str, Any]


class JobList(_Open):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class JobEvent(_Open):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"]


class EventList(_Open):
    object: Literal["list"] = "list"
    data: list[JobEvent]
    has_more: bool


class JobCheckpoint(_Open):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int


class CheckpointList(_Open):
    object: Literal["list"] = "list"
    data: list[JobCheckpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
