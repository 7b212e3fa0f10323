"""Tuning jobs as resources: create (every check that can fail, before anything is stored), read, list,
cancel, pause, resume, and their events and checkpoints.

Validation rules and their owner: this module checks every rule about values (the method, its settings,
the base model, the suffix, the datasets and their fit to the method and the model, the hyperparameters);
``convert`` only maps the wire shapes.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from genai_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from genai_core.limits import FINETUNE as LIMITS

from genai_finetune import hyperparameters as hp
from genai_finetune import planning
from genai_finetune.basemodels import BaseModels
from genai_finetune.datafiles import Datasets
from genai_finetune.methods import Method, config_dict, method
from genai_finetune.planning import Planner
from genai_finetune.store import Store
from genai_finetune.tokenization import Tokenizers, encode
from genai_finetune.types import (
    Dataset,
    Event,
    Hyperparameters,
    Job,
    JobState,
    Level,
    Page,
    number_after,
    sequence_of,
)

SUFFIX = re.compile(rf"^[a-z0-9-]{{0,{LIMITS.max_suffix_length}}}$")
MAX_SEED = 2**63 - 1  # the store keeps it in a signed 64-bit SQLite integer


@dataclass(frozen=True)
class JobRequest:
    base_model: str
    training_dataset_id: str
    validation_dataset_id: str = ""
    method: str = ""
    method_config: dict[str, Any] = field(default_factory=dict)
    hyperparameters: Hyperparameters = Hyperparameters()
    suffix: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    seed: int | None = None


def model_name(base_model: str, suffix: str, job_id: str) -> str:
    """The served name, as OpenAI spells fine-tuned models: ft:<base>:<suffix>:<job>."""
    return f"ft:{base_model}:{suffix}:{job_id}"


class Jobs:
    def __init__(self, store: Store, datasets: Datasets, base_models: BaseModels, tokenizers: Tokenizers,
                 planner: Planner | None = None) -> None:
        self._store = store
        self._datasets = datasets
        self._base_models = base_models
        self._tokenizers = tokenizers
        self._planner = planner  # the model builder's methods (planning.py); None: only the tuning methods

    # -- create -------------------------------------------------------------------------------------

    def _dataset(self, dataset_id: str, name: str, chosen: Method) -> Dataset:
        dataset = self._datasets.get(dataset_id, name)
        if dataset.format not in chosen.formats:
            formats = ", ".join(sorted(f.value for f in chosen.formats))
            raise InvalidArgument.for_field(
                name, f"'{dataset_id}' holds {dataset.format.value} records; method '{chosen.name}' trains on {formats}")
        return dataset

    def _check_lengths(self, dataset: Dataset, name: str, tokenizer, context: int, base: str, cut: int) -> int:
        """Reject records longer than the model's context; count those max_seq_length will truncate."""
        too_long: list[FieldViolation] = []
        truncated = 0
        for record in self._datasets.records(dataset):
            length = len(encode(tokenizer, dataset.format, record))
            if length > context:
                too_long.append(FieldViolation(f"{name}.line[{record['_line']}]",
                                               f"has {length} tokens; {base} takes at most {context}"))
            elif length > cut:
                truncated += 1
        if too_long:
            first = too_long[0]
            raise InvalidArgument(f"{first.field}: {first.description}; shorten or remove it", too_long[:20],
                                  reason="RECORD_TOO_LONG")
        return truncated

    def create(self, request: JobRequest) -> Job:
        chosen = method(request.method)
        config = chosen.build_config(request.method_config)
        if chosen.fixed_base:
            request = replace(request, base_model=planning.ensure_fixed_base(chosen, request.base_model))
        elif request.base_model not in self._base_models.ids:
            raise InvalidArgument.for_field(
                "base_model", f"'{request.base_model}' cannot be tuned here; use one of: {', '.join(self._base_models.ids)}")
        if not SUFFIX.fullmatch(request.suffix):
            raise InvalidArgument.for_field(
                "suffix", f"use up to {LIMITS.max_suffix_length} lowercase letters, digits and '-'")
        if len(request.metadata) > LIMITS.max_metadata_pairs or any(
                len(k) > LIMITS.max_metadata_key_length or len(v) > LIMITS.max_metadata_value_length
                for k, v in request.metadata.items()):
            raise InvalidArgument.for_field(
                "metadata", f"at most {LIMITS.max_metadata_pairs} pairs, keys up to {LIMITS.max_metadata_key_length} "
                f"and values up to {LIMITS.max_metadata_value_length} characters")
        training = self._dataset(request.training_dataset_id, "training_dataset_id", chosen)
        validation = None
        if request.validation_dataset_id:
            validation = self._dataset(request.validation_dataset_id, "validation_dataset_id", chosen)
            if validation.format != training.format:
                raise InvalidArgument.for_field("validation_dataset_id",
                                                f"holds {validation.format.value} records; the training set is {training.format.value}")
        base = self._base_models.get(request.base_model)

        def resolve(examples: int) -> Hyperparameters:
            return hp.resolve(request.hyperparameters, chosen, examples=examples, context_length=base.context_length)

        planned = None
        if self._planner is not None:
            planned = self._planner.plan(planning.Inputs(chosen, config, base, training, validation, resolve))
        elif chosen.fixed_base:
            raise planning.no_planner(chosen)
        truncated, cut = 0, 0
        if planned is not None:
            config, resolved, examples = planned.config, planned.hyperparameters, planned.examples
        else:
            resolved, examples = resolve(training.record_count), training.record_count
            tokenizer = self._tokenizers.get(base.directory)
            cut = resolved.max_seq_length or base.context_length
            truncated = self._check_lengths(training, "training_dataset_id", tokenizer, base.context_length, base.id,
                                            cut)
            if validation is not None:
                self._check_lengths(validation, "validation_dataset_id", tokenizer, base.context_length, base.id, cut)
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        if request.seed is not None and request.seed > MAX_SEED:
            raise InvalidArgument.for_field("seed", f"must be at most {MAX_SEED}")
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        steps = hp.total_steps(resolved, examples)
        messages: list[tuple[str, JobState | None]] = [
            (f"Validating training file: {training.id}", JobState.VALIDATING_FILES),
            *((text, None) for text in (planned.messages if planned else [])),
            (f"Files validated: {examples} examples, {training.token_count} tokens; {steps} steps of "
             f"{resolved.batch_size} examples planned. Moving job to queued state", JobState.QUEUED),
        ]
        if truncated:
            messages.insert(1, (f"{truncated} examples are longer than max_seq_length={cut} tokens and will be "
                                "truncated", None))
        job = Job(
            id=job_id, base_model=base.id, training_dataset_id=training.id,
            validation_dataset_id=validation.id if validation else "", method=chosen.name,
            method_config=config_dict(config), hyperparameters=resolved, suffix=request.suffix,
            metadata=dict(request.metadata), seed=seed, state=JobState.QUEUED, created_at=time.time(),
        )
        return self._store.add_job(job, messages)

    # -- read ---------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        job = self._store.get_job(job_id) if job_id else None
        if job is None:
            raise NotFound(f"no fine-tuning job '{job_id}'", resource_type="fine_tuning.job", resource_name=job_id)
        return job

    def list(self, after: str, limit: int, state: JobState | None = None) -> Page:
        return self._store.list_jobs(after, limit, state)

    def events(self, job_id: str, after: str, limit: int) -> Page:
        self.get(job_id)
        before = sequence_of(after) if after else None
        if after and before is None:
            raise InvalidArgument.for_field("after", f"'{after}' is not an event id of this job")
        return self._store.list_events(job_id, before, limit)

    def events_after(self, job_id: str, sequence: int) -> list[Event]:
        # A uint64 of the request may exceed the store's signed 64-bit integers; no event is that far anyway.
        return self._store.events_after(job_id, min(sequence, 2**63 - 1))

    def checkpoints(self, job_id: str, after: str, limit: int) -> Page:
        self.get(job_id)
        before = number_after(after, "ftckpt-") if after else None
        if after and before is None:
            raise InvalidArgument.for_field("after", f"'{after}' is not a checkpoint id of this job")
        return self._store.list_checkpoints(job_id, before, limit)

    # -- control ------------------------------------------------------------------------------------

    def _refuse(self, job: Job, verb: str, allowed: str) -> FailedPrecondition:
        return FailedPrecondition(f"job '{job.id}' is {job.state.value}; only {allowed} jobs can be {verb}",
                                  reason=f"JOB_{job.state.name}", resource_type="fine_tuning.job", resource_name=job.id)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        unfinished = (JobState.VALIDATING_FILES, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)
        # A running job's worker sees the new state at its next step and stops (see worker.py).
        done = self._store.transition(job_id, unfinished, JobState.CANCELLED, "Fine-tuning job cancelled",
                                      where="outcome = ''")
        if done is None:
            job = self.get(job_id)
            if job.state is JobState.RUNNING:
                raise FailedPrecondition(f"job '{job.id}' has finished training and is registering its result",
                                         reason="JOB_REGISTERING", resource_type="fine_tuning.job", resource_name=job.id)
            raise self._refuse(job, "cancelled", "unfinished")
        return done

    def pause(self, job_id: str) -> Job:
        """Paused at once; a running worker saves a checkpoint at its next step, then lets go."""
        self.get(job_id)
        done = self._store.transition(job_id, (JobState.QUEUED, JobState.RUNNING), JobState.PAUSED,
                                      "Fine-tuning job paused; resume continues from the last checkpoint",
                                      where="outcome = ''")
        if done is None:
            raise self._refuse(self.get(job_id), "paused", "queued or running")
        return done

    def resume(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state is not JobState.PAUSED:
            raise self._refuse(job, "resumed", "paused")
        done = self._store.transition(job_id, (JobState.PAUSED,), JobState.QUEUED,
                                      "Fine-tuning job resumed; moving job to queued state",
                                      where="worker = '' OR lease_until < ?", where_args=[time.time()])
        if done is None:
            raise FailedPrecondition(f"job '{job_id}' is still saving its checkpoint; resume it in a few seconds",
                                     reason="JOB_SAVING", resource_type="fine_tuning.job", resource_name=job_id)
        return done

    def add_event(self, job_id: str, level: Level, message: str) -> None:
        self._store.add_event(job_id, level, message)
