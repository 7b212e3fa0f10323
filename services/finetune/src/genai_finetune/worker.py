"""The worker: a process of its own that takes jobs from the queue one at a time and trains them.

It holds a job through a lease it renews every step (and from a background thread while a model loads or
a step is long). A worker killed with SIGKILL stops renewing; the supervisor (or, without one, the lease's
expiry) lets the next worker take the job over, and the Trainer resumes it from the last complete
checkpoint: weights or adapter, optimizer, scheduler, RNG states and the position in the data.

SIGTERM asks for a clean stop: the running job saves a checkpoint at the end of its step and is left
RUNNING without a worker, so the next worker (after a restart) resumes it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from genai_core.errors import GenAIError

from genai_finetune import execution
from genai_finetune.basemodels import BaseModels
from genai_finetune.datafiles import Datasets
from genai_finetune.jobs import model_name
from genai_finetune.store import Store
from genai_finetune.types import Checkpoint, Job, JobError, JobState, Level, Metrics

logger = logging.getLogger(__name__)


def build_spec(job: Job, datasets: Datasets, base_models: BaseModels, jobs_dir: Path, threads: int) -> execution.RunSpec:
    training = datasets.get(job.training_dataset_id, "training_dataset_id")
    validation = datasets.get(job.validation_dataset_id, "validation_dataset_id") if job.validation_dataset_id else None
    return execution.spec_for(
        job, base_models.get(job.base_model), training, datasets.path(training), validation,
        datasets.path(validation) if validation else None, jobs_dir / job.id, threads,
        model_name(job.base_model, job.suffix, job.id),
    )


def failure(exc: BaseException) -> JobError:
    """A training failure as the job's error: our own errors keep their code and message; anything else is
    INTERNAL, named by its type and first line (a training error is the user's to read, e.g. out of memory)."""
    if isinstance(exc, GenAIError):
        return JobError(exc.code.value, exc.message, exc.reason or "TRAINING_FAILED")
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return JobError("INTERNAL", f"training failed: {type(exc).__name__}: {first}", "TRAINING_FAILED")


class StoreReporter:
    """A run's events go to the queue database; its lease is renewed at every question about its state."""

    def __init__(self, store: Store, job_id: str, served_name: str, worker: str, lease_seconds: float,
                 stopping: threading.Event) -> None:
        self._store = store
        self._job_id = job_id
        self._served_name = served_name
        self._worker = worker
        self._lease = lease_seconds
        self._stopping = stopping
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> StoreReporter:
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._beat.join(timeout=5)

    def _heartbeats(self) -> None:
        while not self._done.wait(self._lease / 3):
            try:
                self._store.heartbeat(self._job_id, self._worker, self._lease)
            except Exception:  # noqa: BLE001 - a busy database must not kill the training thread
                logger.exception("renewing the lease of %s failed", self._job_id)

    def message(self, level: Level, text: str) -> None:
        self._store.add_event(self._job_id, level, text)

    def metrics(self, metrics: Metrics, text: str) -> None:
        self._store.set_progress(self._job_id, metrics, text)

    def checkpoint(self, step: int, metrics: Metrics) -> None:
        self._store.add_checkpoint(
            Checkpoint(self._job_id, step, time.time(), metrics, f"{self._served_name}:ckpt-step-{step}"),
            f"Checkpoint created at step {step}")

    def state(self) -> JobState | None:
        if self._stopping.is_set():
            return JobState.PAUSED  # save a checkpoint and stop; the job stays queued for the next worker
        return self._store.heartbeat(self._job_id, self._worker, self._lease)


class Worker:
    def __init__(self, store: Store, datasets: Datasets, base_models: BaseModels, *, jobs_dir: Path, worker_id: str,
                 threads: int, lease_seconds: float, max_attempts: int, poll_seconds: float) -> None:
        self._store = store
        self._datasets = datasets
        self._base_models = base_models
        self._jobs_dir = jobs_dir
        self.worker_id = worker_id
        self._threads = threads
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self.stopping = threading.Event()

    def run_one(self) -> bool:
        """Claim and train one job; False when the queue had none."""
        job = self._store.claim(self.worker_id, self._lease, self._max_attempts)
        if job is None:
            return False
        logger.info("worker %s trains %s (%s on %s, attempt %d)", self.worker_id, job.id, job.method, job.base_model,
                    job.attempts)
        work_dir = self._jobs_dir / job.id
        try:
            spec = build_spec(job, self._datasets, self._base_models, self._jobs_dir, self._threads)
            with StoreReporter(self._store, job.id, spec.served_name, self.worker_id, self._lease,
                               self.stopping) as reporter:
                outcome = execution.run(spec, reporter)
        except Exception as exc:  # noqa: BLE001 - any failure of a run fails the job, not the worker
            logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
            error = failure(exc)
            self._store.transition(job.id, (JobState.RUNNING,), JobState.FAILED, error.message, level=Level.ERROR,
                                   where="worker = ?", where_args=[self.worker_id], error=error, worker="",
                                   lease_until=0)
            shutil.rmtree(work_dir, ignore_errors=True)
            return True
        if outcome is not None:
            self._store.set_outcome(job.id, self.worker_id, outcome, "Training finished; registering the model")
            return True
        now = self._store.get_job(job.id)
        self._store.let_go(job.id, self.worker_id)
        if now is not None and now.state is JobState.CANCELLED:
            shutil.rmtree(work_dir, ignore_errors=True)
        logger.info("worker %s stopped %s (%s)", self.worker_id, job.id, now.state.value if now else "gone")
        return True

    def run(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Train jobs until SIGTERM (``stopping``) or until ``alive`` says the supervisor is gone."""
        while not self.stopping.is_set() and alive():
            if not self.run_one():
                self.stopping.wait(self._poll)
