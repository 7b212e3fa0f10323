"""HTTP shapes of the fine-tuning routes: OpenAI's files and fine_tuning.jobs objects (the official SDK reads
them), with our additions as extra fields, and the native routes' bodies.

Every number of a request is bounded by ``genai_core.limits.FINETUNE`` (the service's own limits; OpenAI's
ranges where OpenAI has one, such as n_epochs 1..50) and by its proto field, so a value no deployment accepts
is a 400 here and nothing overflows a proto field or the service's store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import FINETUNE as LIMITS
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import JSON_SAFE_MAX


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests ------------------------------------------------------------------------------------------

Auto = Literal["auto"]
Steps = Annotated[int, Field(ge=1, le=LIMITS.max_steps)]
Seed = Annotated[int, Field(ge=0, le=JSON_SAFE_MAX, description="the random seed for shuffling, initialization "
                                                                 "and dropout; unset picks one and reports it")]
Metadata = Annotated[dict[Annotated[str, Field(max_length=LIMITS.max_metadata_key_length)],
                          Annotated[str, Field(max_length=LIMITS.max_metadata_value_length)]],
                     Field(max_length=LIMITS.max_metadata_pairs, description="free-form labels (OpenAI's metadata)")]


class Hyperparameters(_Strict):
    """The shared hyperparameters: each unset or "auto" (the method's default, resolved when the job is
    created and reported back) or a value within the service's limits."""

    n_epochs: Annotated[int, Field(ge=1, le=LIMITS.max_epochs)] | Auto | None = None
    batch_size: Annotated[int, Field(ge=1, le=LIMITS.max_batch_size)] | Auto | None = Field(
        None, description="examples per optimizer step (summed over gradient accumulation)")
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=LIMITS.max_learning_rate_multiplier)] | Auto | None = \
        Field(None, description="the factor applied to the method's base learning rate")
    max_steps: Steps | Auto | None = Field(None, description="ends training before n_epochs do")
    max_seq_length: Annotated[int, Field(ge=LIMITS.min_seq_length, le=LIMITS.max_seq_length)] | Auto | None = Field(
        None, description="tokens per record trained on (at most the base model's context); longer ones are cut")
    warmup_ratio: Annotated[float, Field(ge=0, le=LIMITS.max_warmup_ratio)] | Auto | None = None
    checkpoint_steps: Steps | Auto | None = None
    eval_steps: Steps | Auto | None = None
    gradient_accumulation_steps: Annotated[
        int, Field(ge=1, le=LIMITS.max_gradient_accumulation_steps)] | Auto | None = None
    weight_decay: Annotated[float, Field(ge=0, le=LIMITS.max_weight_decay)] | Auto | None = None
    lr_scheduler: str | None = Field(None, description="linear, cosine, constant or constant_with_warmup; auto")


class MethodHyperparameters(Hyperparameters):
    """OpenAI's ``method.<type>.hyperparameters``: the shared ones plus the method's own settings in the same
    object (``beta``, ``rank``, ``alpha``, ``num_virtual_tokens``, ...; see GET /v1/finetune/info), which the
    service checks."""

    model_config = ConfigDict(extra="allow", strict=True)


class MethodSettings(_Strict):
    """``method.<type>``: ``{"hyperparameters": {...}}``."""

    hyperparameters: MethodHyperparameters = Field(default_factory=MethodHyperparameters)


class Method(BaseModel):
    """OpenAI's ``method``: ``{"type": "supervised" | "dpo", "<type>": {"hyperparameters": {...}}}``. Extension:
    ``type`` may name any method of ``GET /v1/finetune/info`` ("lora", "prompt_tuning", "prefix_tuning",
    "full", "reward_model", ...); "supervised" is LoRA."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, MethodSettings] = Field(init=False)

    type: str = Field(min_length=1, description="supervised (LoRA), dpo, or a method of GET /v1/finetune/info")


class JobCreate(_Strict):
    model: str = Field(description="the base model, one of GET /v1/finetune/info' base_models")
    training_file: str = Field(description="a file id from POST /v1/files (purpose fine-tune)")
    validation_file: str | None = None
    hyperparameters: MethodHyperparameters | None = Field(
        None, description="deprecated by OpenAI in favour of method.<type>.hyperparameters; used when method is unset")
    method: Method | None = None
    suffix: str | None = Field(None, max_length=LIMITS.max_suffix_length,
                               description="lowercase letters, digits and '-' in the name ft:<base>:<suffix>:<job>")
    seed: Seed | None = None
    metadata: Metadata | None = None
    integrations: list[dict[str, Any]] | None = Field(None, description="not supported; must be empty")


class NativeJobCreate(_Strict):
    """The native route: the gRPC request's fields, by their proto names."""

    base_model: str = Field("", description="the model to tune; empty for methods that start from scratch")
    training_dataset_id: str
    validation_dataset_id: str = ""
    method: str = Field("", description="a method of GET /v1/finetune/info; empty is lora")
    method_config: dict[str, Any] = Field(default_factory=dict, description="the method's own settings")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    suffix: str = Field("", max_length=LIMITS.max_suffix_length)
    metadata: Metadata = Field(default_factory=dict)
    seed: Seed | None = None


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
