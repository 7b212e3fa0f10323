"""The evaluation service's settings: the only place it reads the environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.settings import DownstreamSettings, ServerSettings, load

NAME = "evaluation"
PREFIX = "GENAI_EVALUATION_"
DOWNSTREAM = ("tokenizer", "inference", "embedding", "retrieval")


class SandboxMode(enum.Enum):
    AUTO = "auto"  # namespaces when they work here (root on Linux), else rlimits only
    NAMESPACES = "namespaces"  # refuse to start without them
    RLIMITS = "rlimits"


@dataclass(frozen=True)
class EvaluationSettings:
    """Domain settings, read from ``GENAI_EVALUATION_*``."""

    data_dir: Path = Path("var/evaluation")  # the SQLite store and registered tasks' JSON files (datasets/)
    database_url: str = ""  # postgresql://...: keep runs in PostgreSQL instead of SQLite
    max_concurrent_runs: int = 2  # runs executing at once, each on its own worker thread
    max_inflight: int = 8  # model calls in flight per run
    batch_size: int = 16  # examples per stored batch and progress event
    tokenizer: str = "smollm2-135m-instruct"  # the tokenizer-service tokenizer of the inference models
    embedding_model: str = "all-minilm-l6-v2"  # answer_similarity's embeddings
    sandbox: SandboxMode = SandboxMode.AUTO
    sandbox_parallel: int = 2  # programs running at once per run
    endpoint_timeout: float = 300.0  # seconds per call to an OpenAI-compatible endpoint
    bootstrap_resamples: int = 1000

    def __post_init__(self) -> None:
        if min(self.max_concurrent_runs, self.max_inflight, self.batch_size, self.sandbox_parallel) < 1:
            raise ValueError("max_concurrent_runs, max_inflight, batch_size and sandbox_parallel must be positive")
        if not 100 <= self.bootstrap_resamples <= 100_000:
            raise ValueError("bootstrap_resamples must be between 100 and 100000")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must be a postgresql:// DSN")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    evaluation: EvaluationSettings
    downstream: DownstreamSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service(NAME, environ),
            evaluation=load(EvaluationSettings, PREFIX, environ),
            # Generations of long answers under load take minutes; the deadline is per call.
            downstream=DownstreamSettings.from_env(PREFIX, DOWNSTREAM, environ, timeout=600.0),
        )
