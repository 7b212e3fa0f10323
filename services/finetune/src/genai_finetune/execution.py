"""One training run, wherever it runs: a local worker process or a Ray job.

A ``RunSpec`` is everything a run needs, as JSON (paths on the filesystem the service and the runners
share); a ``Reporter`` is where its events go and where it learns whether to go on (the local worker writes
to the queue database; a Ray job prints event lines that the Ray runner copies into it). ``run`` imports the
method's recipe and hands it a ``RecipeContext``; it returns the ``Outcome``, or None when the job was paused
or cancelled in the middle.
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from genai_finetune.basemodels import BaseModel
from genai_finetune.methods import method
from genai_finetune.records import Record, parse
from genai_finetune.types import Dataset, DatasetFormat, Hyperparameters, Job, JobState, Level, Metrics, Outcome

CHECKPOINTS = "checkpoints"
OUTPUT = "output"


class Reporter(Protocol):
    def message(self, level: Level, text: str) -> None: ...

    def metrics(self, metrics: Metrics, text: str) -> None: ...

    def checkpoint(self, step: int, metrics: Metrics) -> None: ...

    def state(self) -> JobState | None:
        """What the job should be now: RUNNING goes on; PAUSED saves a checkpoint and stops; anything else
        (cancelled, or None: another worker took the job over) stops at once."""
        ...


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    method: str
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int
    base_model: str
    base_model_dir: str
    base_model_revision: str
    context_length: int
    training_path: str
    training_filename: str
    training_format: str
    validation_path: str
    validation_filename: str
    work_dir: str
    threads: int
    served_name: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))


def spec_for(job: Job, base: BaseModel, training: Dataset, training_path: Path,
             validation: Dataset | None, validation_path: Path | None, work_dir: Path, threads: int,
             served_name: str) -> RunSpec:
    return RunSpec(
        job_id=job.id, method=job.method, config=job.method_config, hyperparameters=asdict(job.hyperparameters),
        seed=job.seed, base_model=base.id, base_model_dir=str(base.directory), base_model_revision=base.revision,
        context_length=base.context_length, training_path=str(training_path), training_filename=training.filename,
        training_format=training.format.value, validation_path=str(validation_path or ""),
        validation_filename=validation.filename if validation else "", work_dir=str(work_dir), threads=threads,
        served_name=served_name,
    )


@dataclass
class RecipeContext:
    """What a recipe gets: the spec, its typed settings, the parsed records and where to write."""

    spec: RunSpec
    config: Any  # the method's config dataclass
    hyperparameters: Hyperparameters
    format: DatasetFormat
    train_records: list[Record]
    eval_records: list[Record]
    reporter: Reporter

    @property
    def checkpoints_dir(self) -> Path:
        return Path(self.spec.work_dir) / CHECKPOINTS

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.work_dir) / OUTPUT

    def last_checkpoint(self) -> str | None:
        """The newest complete checkpoint: the trainer writes trainer_state.json last, so a directory without
        it was cut off mid-save (a killed worker) and is removed."""
        if not self.checkpoints_dir.is_dir():
            return None
        found = sorted((p for p in self.checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                       key=lambda p: int(p.name.split("-")[-1]))
        for path in reversed(found):
            if (path / "trainer_state.json").exists():
                return str(path)
            shutil.rmtree(path, ignore_errors=True)
        return None


def _records(path: str, filename: str, fmt: DatasetFormat) -> list[Record]:
    if not path:
        return []
    return parse(Path(path).read_bytes(), filename, fmt)[1]


def run(spec: RunSpec, reporter: Reporter) -> Outcome | None:
    chosen = method(spec.method)
    fmt = DatasetFormat(spec.training_format)
    context = RecipeContext(
        spec=spec,
        config=chosen.build_config(spec.config),
        hyperparameters=Hyperparameters(**spec.hyperparameters),
        format=fmt,
        train_records=_records(spec.training_path, spec.training_filename, fmt),
        eval_records=_records(spec.validation_path, spec.validation_filename, fmt),
        reporter=reporter,
    )
    module, _, function = chosen.recipe.partition(":")
    return getattr(importlib.import_module(module), function)(context)
