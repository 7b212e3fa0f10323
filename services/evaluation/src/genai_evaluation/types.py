"""The evaluation domain's values: run specifications, runs, samples, events, metric results, comparisons.

Frozen dataclasses and enums only; no protobuf. ``convert`` maps them to and from the API, ``store`` to
and from JSON rows (``to_json``/``from_json`` keep both directions next to the fields they describe).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class OutputType(enum.Enum):
    """How a task asks the model, in lm-evaluation-harness's words."""

    MULTIPLE_CHOICE = "multiple_choice"
    LOGLIKELIHOOD = "loglikelihood"
    LOGLIKELIHOOD_ROLLING = "loglikelihood_rolling"
    GENERATE_UNTIL = "generate_until"
    RETRIEVAL = "retrieval"
    RAG = "rag"


class SearchMode(enum.Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


class RunState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server."""

    base_url: str
    model: str
    api_key: str = ""


@dataclass(frozen=True)
class ModelRef:
    """The model under test or a judge: an inference-service model (empty: its default) or an endpoint."""

    inference_model: str = ""
    endpoint: Endpoint | None = None

    @property
    def name(self) -> str:
        return self.endpoint.model if self.endpoint else self.inference_model

    def redacted(self) -> ModelRef:
        if self.endpoint is None or not self.endpoint.api_key:
            return self
        return replace(self, endpoint=replace(self.endpoint, api_key=""))


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: tuple[str, ...] = ()
    samples_per_example: int | None = None


@dataclass(frozen=True)
class RetrievalTarget:
    tenant: str = ""
    collection: str = ""
    mode: SearchMode | None = None
    top_k: int | None = None
    rerank: bool = False


@dataclass(frozen=True)
class RunSpec:
    """What a run evaluates and how, as the caller asked for it."""

    task_ids: tuple[str, ...]
    model: ModelRef = ModelRef()
    limit: int | None = None
    few_shot: int | None = None
    generation: GenerationParams = GenerationParams()
    retrieval: RetrievalTarget = RetrievalTarget()
    judge: ModelRef | None = None
    apply_chat_template: bool = False
    prompt_template: str | None = None
    seed: int = 1234
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["retrieval"]["mode"] = self.retrieval.mode.value if self.retrieval.mode else None
        out["task_ids"] = list(self.task_ids)
        out["generation"]["stop_sequences"] = list(self.generation.stop_sequences)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        def model(value: dict[str, Any] | None) -> ModelRef | None:
            if value is None:
                return None
            endpoint = Endpoint(**value["endpoint"]) if value.get("endpoint") else None
            return ModelRef(value.get("inference_model", ""), endpoint)

        retrieval = dict(data.get("retrieval") or {})
        retrieval["mode"] = SearchMode(retrieval["mode"]) if retrieval.get("mode") else None
        generation = dict(data.get("generation") or {})
        generation["stop_sequences"] = tuple(generation.get("stop_sequences") or ())
        return cls(
            task_ids=tuple(data["task_ids"]),
            model=model(data.get("model")) or ModelRef(),
            limit=data.get("limit"),
            few_shot=data.get("few_shot"),
            generation=GenerationParams(**generation),
            retrieval=RetrievalTarget(**retrieval),
            judge=model(data.get("judge")),
            apply_chat_template=bool(data.get("apply_chat_template")),
            prompt_template=data.get("prompt_template"),
            seed=int(data.get("seed", 1234)),
            labels=dict(data.get("labels") or {}),
        )

    def redacted(self) -> RunSpec:
        """The spec as the API returns it: no endpoint API keys."""
        return replace(self, model=self.model.redacted(), judge=self.judge.redacted() if self.judge else None)


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: the fields it sets replace the base's."""

    name: str
    model: ModelRef | None = None
    prompt_template: str | None = None
    search_mode: SearchMode | None = None


@dataclass(frozen=True)
class MetricValue:
    """One metric of one task (after one filter), with its uncertainty."""

    task_id: str
    metric: str
    value: float
    sample_count: int
    filter: str = ""
    stderr: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int = 0
    current_task: str = ""
    per_second: float = 0.0
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    reason: str
    message: str


@dataclass(frozen=True)
class Run:
    """A stored run: its spec and everything the service learned while running it."""

    id: str
    spec: RunSpec
    state: RunState
    create_time: float
    update_time: float
    experiment_id: str = ""
    variant: str = ""
    progress: Progress = Progress()
    results: tuple[MetricValue, ...] = ()
    error: ErrorInfo | None = None
    usage: Usage = Usage()
    last_sequence: int = 0
    start_time: float | None = None
    end_time: float | None = None
    resume_count: int = 0


@dataclass(frozen=True)
class Sample:
    """The record of one evaluated example; ``scores`` are what metrics aggregate."""

    task_id: str
    index: int
    document: dict[str, Any]
    prompt: str = ""
    target: str = ""
    choices: tuple[str, ...] = ()
    loglikelihoods: tuple[float, ...] = ()
    responses: tuple[str, ...] = ()
    filtered: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    retrieved_ids: tuple[str, ...] = ()
    usage: Usage = Usage()
    trace_id: str = ""
    execution_results: tuple[str, ...] = ()
    # Per-sample inputs of corpus-level aggregations (perplexity: loglikelihood and token/word/byte counts).
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        data = dict(data)
        for key in ("choices", "loglikelihoods", "responses", "retrieved_ids", "execution_results"):
            data[key] = tuple(data.get(key) or ())
        data["usage"] = Usage(**(data.get("usage") or {}))
        return cls(**data)


class EventKind(enum.Enum):
    PROGRESS = "progress"
    PARTIAL_METRICS = "partial_metrics"
    TASK_COMPLETE = "task_complete"
    STATE_CHANGE = "state_change"
    ERROR = "error"


@dataclass(frozen=True)
class Event:
    """One recorded event of a run; ``payload`` is JSON (its shape depends on ``kind``)."""

    run_id: str
    sequence: int
    time: float
    kind: EventKind
    payload: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """One run against the baseline on one task metric, over the examples both scored."""

    run_id: str
    task_id: str
    metric: str
    filter: str
    paired_count: int
    baseline_value: float
    value: float
    difference: float
    ci_lower: float
    ci_upper: float
    p_value: float
    test: str
    wins: int
    losses: int
    ties: int
    differences: tuple[tuple[int, float, float], ...] = ()
