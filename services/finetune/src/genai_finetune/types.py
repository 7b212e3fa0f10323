"""Domain values of the fine-tune service: datasets, jobs, events, checkpoints, artifacts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# The base model of a model trained from random weights (a method's ``fixed_base``).
SCRATCH = "scratch"
# The encoder cross-encoder rerankers start from (the embedding service's default model).
MINILM = "all-minilm-l6-v2"


class DatasetFormat(enum.Enum):
    CHAT = "chat"  # {"messages": [...]}
    COMPLETION = "completion"  # {"prompt", "completion"}
    PREFERENCE = "preference"  # {"input": {"messages"}, "preferred_output", "non_preferred_output"}
    TEXT = "text"  # {"text"} lines or a .txt file
    PAIRS = "pairs"  # {"query", "document", "negatives"?} or a corpus line {"document"}: reranker training
    IMAGE = "image"  # {"image": base64 PNG, "label"?}: image generator training


class JobState(enum.Enum):
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class ArtifactKind(enum.Enum):
    ADAPTER = "adapter"
    MODEL = "model"
    REWARD_MODEL = "reward_model"


class Serving(enum.Enum):
    """How the inference service serves an artifact (a registry key of ``publishing.PUBLISHERS``)."""

    NONE = ""  # not served by the inference service (reward models: the evaluation service loads them)
    ADAPTER = "adapter"  # LoadAdapter: shares the base model's batches (LoRA)
    MODEL = "model"  # LoadModel: a model of its own (full weights, prompt/prefix-tuning adapters)
    EMBEDDING = "embedding"  # the embedding service's LoadModel: an encoder whose mean-pooled states are embeddings
    RERANKER = "reranker"  # the embedding service's LoadModel: a cross-encoder that its Rerank RPC runs


class Level(enum.Enum):
    INFO = "info"
    WARNING = "warn"
    ERROR = "error"


class EventType(enum.Enum):
    MESSAGE = "message"
    METRICS = "metrics"


@dataclass(frozen=True)
class Dataset:
    id: str
    filename: str
    purpose: str
    format: DatasetFormat
    record_count: int
    size_bytes: int
    sha256: str
    token_count: int
    created_at: float


@dataclass(frozen=True)
class Hyperparameters:
    """OpenAI-style shared settings. In a request ``None`` means "auto"; in a job every value is resolved
    (``learning_rate`` is the method's base rate times ``learning_rate_multiplier``)."""

    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    learning_rate: float | None = None
    max_steps: int | None = None
    max_seq_length: int | None = None
    warmup_ratio: float | None = None
    checkpoint_steps: int | None = None
    eval_steps: int | None = None
    gradient_accumulation_steps: int | None = None
    weight_decay: float | None = None
    lr_scheduler: str | None = None


@dataclass(frozen=True)
class Metrics:
    """Training progress at one logged step."""

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    train_loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    trained_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobError:
    code: str  # an ErrorCode value such as "INVALID_ARGUMENT", or "INTERNAL"
    message: str
    reason: str = ""  # a stable UPPER_SNAKE identifier, such as "WORKER_DIED" or "TRAINING_FAILED"


@dataclass(frozen=True)
class Job:
    id: str
    base_model: str
    training_dataset_id: str
    validation_dataset_id: str
    method: str
    method_config: dict[str, Any]
    hyperparameters: Hyperparameters
    suffix: str
    metadata: dict[str, str]
    seed: int
    state: JobState
    created_at: float
    progress: Metrics = Metrics()
    fine_tuned_model: str = ""
    artifact_id: str = ""
    error: JobError | None = None
    trained_tokens: int = 0
    last_sequence: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    progress_at: float | None = None  # when progress was last reported


@dataclass(frozen=True)
class Event:
    job_id: str
    sequence: int
    created_at: float
    level: Level
    type: EventType
    message: str
    metrics: Metrics | None = None
    state: JobState | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return event_id(self.job_id, self.sequence)


@dataclass(frozen=True)
class Checkpoint:
    job_id: str
    step: int
    created_at: float
    metrics: Metrics
    fine_tuned_model_checkpoint: str

    @property
    def id(self) -> str:
        return f"ftckpt-{self.job_id.removeprefix('ftjob-')}-{self.step:06d}"


@dataclass(frozen=True)
class Artifact:
    id: str
    kind: ArtifactKind
    job_id: str
    method: str
    base_model: str
    base_model_revision: str
    dataset_sha256: str
    path: str
    format: str
    size_bytes: int
    model_id: str
    serving: Serving
    served: bool
    metrics: dict[str, Any]
    config: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class Outcome:
    """What a finished training run left behind, before it becomes an artifact."""

    kind: ArtifactKind
    serving: Serving
    format: str
    path: str  # the output directory
    metrics: dict[str, Any]
    trained_tokens: int


@dataclass(frozen=True)
class ServiceInfo:
    engine: str  # the training libraries and their versions
    base_models: list[str]
    runner: str
    max_concurrent_jobs: int
    max_dataset_bytes: int
    max_dataset_records: int


@dataclass(frozen=True)
class Page:
    """One page of a newest-first listing; ``has_more`` says whether older items follow."""

    items: list[Any]
    has_more: bool


def event_id(job_id: str, sequence: int) -> str:
    return f"ftevent-{job_id.removeprefix('ftjob-')}-{sequence:06d}"


def number_after(resource_id: str, prefix: str) -> int | None:
    """The number that ends an id such as ``ftevent-<job>-<n>``, or None when ``resource_id`` is not one.
    Only ASCII digits (``str.isdigit`` also takes "4²", which ``int`` refuses), and few enough of them for
    the store's signed 64-bit integers."""
    _, _, tail = resource_id.rpartition("-")
    ok = resource_id.startswith(prefix) and tail.isascii() and tail.isdigit() and len(tail) <= 18
    return int(tail) if ok else None


def sequence_of(event_id_: str) -> int | None:
    """The sequence number in an event id, or None when it is not one."""
    return number_after(event_id_, "ftevent-")


@dataclass(frozen=True)
class TokenizerFiles:
    """A tokenizer of the tokenizer service, as files that transformers' AutoTokenizer loads as a directory."""

    id: str
    revision: str  # a hash of the files
    vocab_size: int
    files: list[tuple[str, bytes]]  # (file name, content)
