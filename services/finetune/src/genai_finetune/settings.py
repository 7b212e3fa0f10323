"""The fine-tune service's settings: the only place it reads the environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.limits import FINETUNE
from genai_core.services import service
from genai_core.settings import DownstreamSettings, ServerSettings, load

PREFIX = service("finetune").env_prefix
CALLS = ("inference", "tokenizer", "embedding")  # the services this one calls


class RunnerKind(enum.Enum):
    LOCAL = "local"  # worker processes on this machine, fed from the SQLite queue
    RAY = "ray"  # each job submitted to a Ray cluster through the Ray Jobs API


@dataclass(frozen=True)
class FinetuneSettings:
    """Domain settings, read from ``GENAI_FINETUNE_*``."""

    data_dir: Path = Path("var/finetune")  # queue database, datasets, job work dirs, artifacts
    cache_dir: Path = Path("var/cache")  # the converted default model, shared with the inference service
    # Base models besides the default, as "id=directory" pairs (Hugging Face directories).
    base_models: tuple[str, ...] = ()
    default_base_model: str = "smollm2-135m-instruct"
    runner: RunnerKind = RunnerKind.LOCAL
    workers: int = 1  # jobs training at once (local runner: worker processes); 2 cores fit one
    threads: int = 2  # torch threads per worker
    ray_address: str = ""  # the Ray dashboard, e.g. http://127.0.0.1:8265 (runner "ray")
    ray_python: str = "python"  # the interpreter the Ray job's entrypoint runs with on the cluster
    max_dataset_bytes: int = FINETUNE.max_dataset_bytes
    max_dataset_records: int = FINETUNE.max_dataset_records
    max_attempts: int = 3  # a job whose worker died this many times fails instead of restarting again
    # The memory a training run may need by the estimate made when the job is created (the model builder's methods);
    # 0: 80 % of this machine's memory.
    max_train_memory_bytes: int = 0
    lease_seconds: float = 30.0  # a running job whose worker has not reported for this long is taken over
    poll_seconds: float = 0.5  # how often event streams and the job monitor look at the queue
    reconcile_seconds: float = 15.0  # how often artifacts are checked to be loaded in the inference service
    # Set by the supervisor for each worker process it starts (python -m genai_finetune worker):
    worker_id: str = ""
    supervisor_pid: int = 0  # the worker exits between jobs once this process is gone

    @property
    def imports_dir(self) -> Path:
        """CreateDataset ``file_path`` sources are relative to this directory and may not leave it."""
        return self.data_dir / "imports"

    @property
    def artifacts_dir(self) -> Path:
        """Where artifacts live; the inference service resolves artifact ids under this directory
        (``GENAI_INFERENCE_ARTIFACTS_DIR`` must name the same place)."""
        return self.data_dir / "artifacts"

    def extra_base_models(self) -> dict[str, Path]:
        return {k.strip(): Path(v.strip()).expanduser() for k, _, v in (p.partition("=") for p in self.base_models)}

    def __post_init__(self) -> None:
        for pair in self.base_models:
            name, sep, path = pair.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"base_models entries look like id=/path/to/model, not {pair!r}")
        if self.runner is RunnerKind.RAY and not self.ray_address:
            raise ValueError("runner ray needs GENAI_FINETUNE_RAY_ADDRESS (the dashboard, http://host:8265)")
        if min(self.workers, self.threads, self.max_attempts) < 1:
            raise ValueError("workers, threads and max_attempts must be at least 1")
        if min(self.max_dataset_bytes, self.max_dataset_records) < 1:
            raise ValueError("dataset limits must be positive")
        if min(self.lease_seconds, self.poll_seconds, self.reconcile_seconds) <= 0:
            raise ValueError("lease, poll and reconcile intervals must be positive")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    finetune: FinetuneSettings
    downstream: DownstreamSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service("finetune", environ),
            finetune=load(FinetuneSettings, PREFIX, environ),
            downstream=DownstreamSettings.from_env(PREFIX, CALLS, environ),
        )
