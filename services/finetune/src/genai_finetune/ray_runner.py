"""The Ray runner: each job runs as a Ray job (Ray Jobs API) on a cluster, with the same recipe as a local
worker. The cluster must see the service's data directory at the same path (a shared volume: datasets,
checkpoints and outputs live there).

Both sides of the protocol are here:

* on the cluster, ``python -m genai_finetune run-spec <spec.json>`` runs ``execution.run`` with a
  ``LineReporter``: events are printed as ``@@genai-finetune {json}`` lines, and the job learns whether to go
  on from the ``control`` file in its work directory (written by the runner when the API pauses or cancels);
* in the service, ``RayRunner`` claims queued jobs from the queue, submits them, renews their leases, copies
  the event lines from the Ray job's logs into the queue database, and records the outcome when the Ray job
  ends. A paused job resumes from its last checkpoint as a new submission; after a service restart the runner
  re-attaches to the submissions still running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genai_finetune import execution
from genai_finetune.basemodels import BaseModels
from genai_finetune.datafiles import Datasets
from genai_finetune.recipes import distributed
from genai_finetune.store import Store
from genai_finetune.types import ArtifactKind, Checkpoint, JobError, JobState, Level, Metrics, Outcome, Serving
from genai_finetune.worker import build_spec, failure

logger = logging.getLogger(__name__)

PREFIX = "@@genai-finetune "
CONTROL = "control"
OUTCOME = "outcome.json"
SPEC = "spec.json"


# -- the cluster side -----------------------------------------------------------------------------------


class LineReporter:
    """``execution.Reporter`` for a Ray job: events to stdout, state from the control file (or SIGTERM)."""

    def __init__(self, work_dir: Path) -> None:
        self._control = work_dir / CONTROL
        self._terminated = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_: Any) -> None:
        self._terminated = True

    @staticmethod
    def _emit(kind: str, **fields: Any) -> None:
        sys.stdout.write(PREFIX + json.dumps({"kind": kind, **fields}) + "\n")
        sys.stdout.flush()

    def message(self, level: Level, text: str) -> None:
        self._emit("message", level=level.value, text=text)

    def metrics(self, metrics: Metrics, text: str) -> None:
        self._emit("metrics", metrics=asdict(metrics), text=text)

    def checkpoint(self, step: int, metrics: Metrics) -> None:
        self._emit("checkpoint", step=step, metrics=asdict(metrics))

    def state(self) -> JobState | None:
        if self._terminated:
            return JobState.PAUSED
        try:
            return JobState(self._control.read_text().strip() or "running")
        except (OSError, ValueError):
            return JobState.RUNNING


def run_spec(spec_path: Path) -> int:
    """The Ray job's entrypoint: train, then leave ``outcome.json`` (absent when paused or cancelled)."""
    spec = execution.RunSpec.from_json(spec_path.read_text())
    work_dir = Path(spec.work_dir)
    reporter = LineReporter(work_dir)
    try:
        outcome = execution.run(spec, reporter)
    except Exception as exc:  # noqa: BLE001 - reported as the job's error, then a failed Ray job
        error = failure(exc)
        LineReporter._emit("error", error=asdict(error))
        logger.exception("the run of %s failed", spec.job_id)
        return 1
    if outcome is not None and distributed.is_main():  # one writer under torchrun
        record = {**asdict(outcome), "kind": outcome.kind.value, "serving": outcome.serving.value}
        (work_dir / OUTCOME).write_text(json.dumps(record))
    return 0


# -- the service side -----------------------------------------------------------------------------------


class _Tracked:
    def __init__(self, job_id: str, submission: str, work_dir: Path, served_name: str) -> None:
        self.job_id = job_id
        self.submission = submission
        self.work_dir = work_dir
        self.served_name = served_name
        self.offset = 0
        self.error: JobError | None = None
        self.stop_sent = 0.0

    @property
    def worker(self) -> str:
        return f"ray:{self.submission}"


class RayRunner:
    name = "ray"

    def __init__(self, store: Store, datasets: Datasets, base_models: BaseModels, *, address: str, python: str,
                 jobs_dir: Path, threads: int, concurrency: int, lease_seconds: float, max_attempts: int,
                 poll_seconds: float, env: dict[str, str] | None = None) -> None:
        self._store = store
        self._datasets = datasets
        self._base_models = base_models
        self._address = address
        self._python = python
        self._jobs_dir = jobs_dir
        self._threads = threads
        self._concurrency = concurrency
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._env = env or {}
        self._tracked: dict[str, _Tracked] = {}
        self._client: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from ray.job_submission import JobSubmissionClient

        self._client = await asyncio.to_thread(JobSubmissionClient, self._address)
        for job in await asyncio.to_thread(self._store.running):
            holder = await asyncio.to_thread(self._store.holder, job.id)
            if holder.startswith("ray:") and (self._jobs_dir / job.id / SPEC).exists():
                self._reattach(job.id, holder.removeprefix("ray:"))
        self._task = asyncio.create_task(self._loop())

    def _reattach(self, job_id: str, submission: str) -> None:
        work_dir = self._jobs_dir / job_id
        spec = execution.RunSpec.from_json((work_dir / SPEC).read_text())
        tracked = _Tracked(job_id, submission, work_dir, spec.served_name)
        tracked.offset = -1  # skip the lines copied before the restart: they are in the database already
        self._tracked[job_id] = tracked
        logger.info("re-attached to Ray job %s of %s", submission, job_id)

    async def stop(self) -> None:
        """Stop watching; the Ray jobs go on, and the next start re-attaches to them."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self._round()
            except Exception:  # noqa: BLE001 - the next round retries (the cluster may be restarting)
                logger.exception("the Ray runner round failed")
            await asyncio.sleep(self._poll)

    async def _round(self) -> None:
        while len(self._tracked) < self._concurrency:
            if not await self._submit_next():
                break
        for tracked in list(self._tracked.values()):
            await self._follow(tracked)

    async def _submit_next(self) -> bool:
        submission = f"genai-finetune-{uuid.uuid4().hex[:16]}"
        job = await asyncio.to_thread(self._store.claim, f"ray:{submission}", self._lease, self._max_attempts)
        if job is None:
            return False
        spec = await asyncio.to_thread(build_spec, job, self._datasets, self._base_models, self._jobs_dir,
                                       self._threads)
        work_dir = Path(spec.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / SPEC).write_text(spec.to_json())
        (work_dir / CONTROL).write_text(JobState.RUNNING.value)
        (work_dir / OUTCOME).unlink(missing_ok=True)
        await asyncio.to_thread(
            self._client.submit_job, entrypoint=f"{self._python} -m genai_finetune run-spec {work_dir / SPEC}",
            submission_id=submission, runtime_env={"env_vars": self._env} if self._env else None)
        self._tracked[job.id] = _Tracked(job.id, submission, work_dir, spec.served_name)
        await asyncio.to_thread(self._store.add_event, job.id, Level.INFO, f"Submitted to Ray as job {submission}")
        return True

    def _apply(self, tracked: _Tracked, line: str) -> None:
        event = json.loads(line)
        kind = event["kind"]
        if kind == "message":
            self._store.add_event(tracked.job_id, Level(event["level"]), event["text"])
        elif kind == "metrics":
            self._store.set_progress(tracked.job_id, Metrics(**event["metrics"]), event["text"])
        elif kind == "checkpoint":
            step = int(event["step"])
            self._store.add_checkpoint(
                Checkpoint(tracked.job_id, step, time.time(), Metrics(**event["metrics"]),
                           f"{tracked.served_name}:ckpt-step-{step}"), f"Checkpoint created at step {step}")
        elif kind == "error":
            tracked.error = JobError(**event["error"])

    async def _follow(self, tracked: _Tracked) -> None:
        from ray.job_submission import JobStatus

        state = await asyncio.to_thread(self._store.heartbeat, tracked.job_id, tracked.worker, self._lease)
        if state is not None and state is not JobState.RUNNING:
            (tracked.work_dir / CONTROL).write_text(state.value)
        status = await asyncio.to_thread(self._client.get_job_status, tracked.submission)
        logs = await asyncio.to_thread(self._client.get_job_logs, tracked.submission)
        if tracked.offset < 0:
            tracked.offset = len(logs)
        fresh, tracked.offset = logs[tracked.offset:], len(logs)
        for line in fresh.splitlines():
            if line.startswith(PREFIX):
                await asyncio.to_thread(self._apply, tracked, line[len(PREFIX):])
        if status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return
        del self._tracked[tracked.job_id]
        await asyncio.to_thread(self._finish, tracked, status)

    def _finish(self, tracked: _Tracked, status: Any) -> None:
        outcome_path = tracked.work_dir / OUTCOME
        if outcome_path.exists():
            raw = json.loads(outcome_path.read_text())
            outcome = Outcome(**{**raw, "kind": ArtifactKind(raw["kind"]), "serving": Serving(raw["serving"])})
            self._store.set_outcome(tracked.job_id, tracked.worker, outcome, "Training finished; registering the model")
            return
        job = self._store.get_job(tracked.job_id)
        if job is not None and job.state is JobState.RUNNING and str(status) != "SUCCEEDED":
            error = tracked.error or JobError("INTERNAL", f"the Ray job {tracked.submission} ended {status}; "
                                                          "see its logs on the cluster", "RAY_JOB_FAILED")
            self._store.transition(tracked.job_id, (JobState.RUNNING,), JobState.FAILED, error.message,
                                   level=Level.ERROR, error=error, worker="", lease_until=0)
            return
        self._store.let_go(tracked.job_id, tracked.worker)  # paused, cancelled, or stopped cleanly mid-run
