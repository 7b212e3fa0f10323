"""The persistent state of the service in one SQLite database: datasets, the job queue, events,
checkpoints and artifacts.

The gRPC server and the worker processes open the same file (WAL mode: readers never wait for the
writer). Every state change of a job is one conditional UPDATE plus its event in one transaction, so a
worker finishing and an API call cancelling can never both win. Calls are synchronous and short; the
async server runs them in a thread.

    >>> # store = Store(Path("var/finetune/finetune.db"))
    >>> # job = store.claim("worker-1", lease_seconds=30)     # the next queued job, or a stale running one
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genai_finetune.types import (
    Artifact,
    ArtifactKind,
    Checkpoint,
    Dataset,
    DatasetFormat,
    Event,
    EventType,
    Hyperparameters,
    Job,
    JobError,
    JobState,
    Level,
    Metrics,
    Outcome,
    Page,
    Serving,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
  n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
  format TEXT NOT NULL, record_count INTEGER NOT NULL, size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
  token_count INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, created_at REAL NOT NULL, base_model TEXT NOT NULL,
  training_dataset_id TEXT NOT NULL, validation_dataset_id TEXT NOT NULL, method TEXT NOT NULL,
  method_config TEXT NOT NULL, hyperparameters TEXT NOT NULL, suffix TEXT NOT NULL, metadata TEXT NOT NULL,
  seed INTEGER NOT NULL, state TEXT NOT NULL, worker TEXT NOT NULL DEFAULT '',
  lease_until REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '{}',
  trained_tokens INTEGER NOT NULL DEFAULT 0, outcome TEXT NOT NULL DEFAULT '', fine_tuned_model TEXT NOT NULL DEFAULT '',
  artifact_id TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', started_at REAL, finished_at REAL,
  last_sequence INTEGER NOT NULL DEFAULT 0, progress_at REAL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL, sequence INTEGER NOT NULL, created_at REAL NOT NULL, level TEXT NOT NULL, type TEXT NOT NULL,
  message TEXT NOT NULL, metrics TEXT NOT NULL DEFAULT '', state TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (job_id, sequence));
CREATE TABLE IF NOT EXISTS checkpoints (
  job_id TEXT NOT NULL, step INTEGER NOT NULL, created_at REAL NOT NULL, metrics TEXT NOT NULL, name TEXT NOT NULL,
  PRIMARY KEY (job_id, step));
CREATE TABLE IF NOT EXISTS artifacts (
  n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, job_id TEXT NOT NULL,
  method TEXT NOT NULL, base_model TEXT NOT NULL, base_model_revision TEXT NOT NULL, dataset_sha256 TEXT NOT NULL,
  path TEXT NOT NULL, format TEXT NOT NULL, size_bytes INTEGER NOT NULL, model_id TEXT NOT NULL, serving TEXT NOT NULL,
  served INTEGER NOT NULL DEFAULT 0, metrics TEXT NOT NULL, config TEXT NOT NULL, created_at REAL NOT NULL);
"""

UNFINISHED = (JobState.VALIDATING_FILES, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def _metrics(text: str) -> Metrics:
    return Metrics(**json.loads(text)) if text and text != "{}" else Metrics()


def _job(row: sqlite3.Row) -> Job:
    error = json.loads(row["error"]) if row["error"] else None
    return Job(
        id=row["id"], base_model=row["base_model"], training_dataset_id=row["training_dataset_id"],
        validation_dataset_id=row["validation_dataset_id"], method=row["method"],
        method_config=json.loads(row["method_config"]), hyperparameters=Hyperparameters(**json.loads(row["hyperparameters"])),
        suffix=row["suffix"], metadata=json.loads(row["metadata"]), seed=row["seed"], state=JobState(row["state"]),
        created_at=row["created_at"], progress=_metrics(row["progress"]),
        fine_tuned_model=row["fine_tuned_model"], artifact_id=row["artifact_id"],
        error=JobError(**error) if error else None, trained_tokens=row["trained_tokens"],
        last_sequence=row["last_sequence"], started_at=row["started_at"], finished_at=row["finished_at"],
        attempts=row["attempts"], progress_at=row["progress_at"],
    )


def _dataset(row: sqlite3.Row) -> Dataset:
    return Dataset(row["id"], row["filename"], row["purpose"], DatasetFormat(row["format"]), row["record_count"],
                   row["size_bytes"], row["sha256"], row["token_count"], row["created_at"])


def _event(row: sqlite3.Row) -> Event:
    return Event(row["job_id"], row["sequence"], row["created_at"], Level(row["level"]), EventType(row["type"]),
                 row["message"], _metrics(row["metrics"]) if row["metrics"] else None,
                 JobState(row["state"]) if row["state"] else None, json.loads(row["data"]))


def _artifact(row: sqlite3.Row) -> Artifact:
    return Artifact(
        id=row["id"], kind=ArtifactKind(row["kind"]), job_id=row["job_id"], method=row["method"],
        base_model=row["base_model"], base_model_revision=row["base_model_revision"],
        dataset_sha256=row["dataset_sha256"], path=row["path"], format=row["format"], size_bytes=row["size_bytes"],
        model_id=row["model_id"], serving=Serving(row["serving"]), served=bool(row["served"]),
        metrics=json.loads(row["metrics"]), config=json.loads(row["config"]), created_at=row["created_at"],
    )


def _placeholders(values: Sequence[Any]) -> str:
    return ",".join("?" for _ in values)


class Store:
    """One SQLite file; a short-lived connection per call (cheap for SQLite, and safe across threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect().executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so read-then-write steps cannot interleave."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._connect().execute(sql, args).fetchall()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- pages -------------------------------------------------------------------------------------

    def _page(self, table: str, where: str, args: list[Any], after: str, limit: int, convert) -> Page:
        """Newest first; ``after`` is the id of the last item of the previous page."""
        if after:
            found = self._read(f"SELECT n FROM {table} WHERE id = ?", [after])  # noqa: S608 - fixed table names
            if not found:
                return Page([], False)
            where, args = f"{where} AND n < ?", [*args, found[0]["n"]]
        rows = self._read(f"SELECT * FROM {table} WHERE {where} ORDER BY n DESC LIMIT ?", [*args, limit + 1])  # noqa: S608
        return Page([convert(r) for r in rows[:limit]], len(rows) > limit)

    # -- datasets ----------------------------------------------------------------------------------

    def add_dataset(self, d: Dataset) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO datasets (id, filename, purpose, format, record_count, size_bytes, sha256, token_count, "
                "created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (d.id, d.filename, d.purpose, d.format.value, d.record_count, d.size_bytes, d.sha256, d.token_count,
                 d.created_at))

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        rows = self._read("SELECT * FROM datasets WHERE id = ?", [dataset_id])
        return _dataset(rows[0]) if rows else None

    def list_datasets(self, after: str, limit: int, purpose: str = "") -> Page:
        where, args = ("purpose = ?", [purpose]) if purpose else ("1", [])
        return self._page("datasets", where, args, after, limit, _dataset)

    def delete_dataset(self, dataset_id: str) -> tuple[Dataset | None, list[str], bool]:
        """Delete unless an unfinished job uses it: (the dataset, the ids of the jobs in the way, whether its
        file's hash is still used by another dataset)."""
        states = [s.value for s in UNFINISHED]
        with self._tx() as db:
            rows = db.execute("SELECT * FROM datasets WHERE id = ?", [dataset_id]).fetchall()
            if not rows:
                return None, [], False
            users = [r["id"] for r in db.execute(
                f"SELECT id FROM jobs WHERE (training_dataset_id = ? OR validation_dataset_id = ?) "
                f"AND state IN ({_placeholders(states)})", [dataset_id, dataset_id, *states])]
            dataset = _dataset(rows[0])
            if users:
                return dataset, users, True
            db.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])
            shared = db.execute("SELECT 1 FROM datasets WHERE sha256 = ? LIMIT 1", [dataset.sha256]).fetchall()
            return dataset, [], bool(shared)

    # -- jobs --------------------------------------------------------------------------------------

    def add_job(self, job: Job, messages: Sequence[tuple[str, JobState | None]] = ()) -> Job:
        h = asdict(job.hyperparameters)
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, created_at, base_model, training_dataset_id, validation_dataset_id, method, "
                "method_config, hyperparameters, suffix, metadata, seed, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.created_at, job.base_model, job.training_dataset_id, job.validation_dataset_id,
                 job.method, json.dumps(job.method_config), json.dumps(h), job.suffix, json.dumps(job.metadata),
                 job.seed, job.state.value))
            for message, state in messages:
                self._event(db, job.id, Level.INFO, EventType.MESSAGE, message, state=state)
        return self.get_job(job.id)  # type: ignore[return-value]

    def get_job(self, job_id: str) -> Job | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", [job_id])
        return _job(rows[0]) if rows else None

    def list_jobs(self, after: str, limit: int, state: JobState | None = None) -> Page:
        where, args = ("state = ?", [state.value]) if state else ("1", [])
        return self._page("jobs", where, args, after, limit, _job)

    def transition(
        self,
        job_id: str,
        allowed: Sequence[JobState],
        state: JobState,
        message: str,
        *,
        level: Level = Level.INFO,
        where: str = "",
        where_args: Sequence[Any] = (),
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Job | None:
        """Move a job from one of ``allowed`` to ``state`` (setting ``fields``) and record the event, in one
        transaction; None when the job was in another state or failed the extra ``where`` condition (someone
        else moved it first)."""
        values = {"state": state.value, **{k: self._column(k, v) for k, v in fields.items()}}
        if state.terminal:
            values.setdefault("finished_at", time.time())
        sets = ", ".join(f"{k} = ?" for k in values)
        condition = f"id = ? AND state IN ({_placeholders(allowed)})" + (f" AND ({where})" if where else "")
        args: list[Any] = [*values.values(), job_id, *[s.value for s in allowed], *where_args]
        with self._tx() as db:
            if db.execute(f"UPDATE jobs SET {sets} WHERE {condition}", args).rowcount == 0:  # noqa: S608
                return None
            self._event(db, job_id, level, EventType.MESSAGE, message,
                        state=state, data=data)
        return self.get_job(job_id)

    @staticmethod
    def _column(name: str, value: Any) -> Any:
        if name == "error":
            return json.dumps(asdict(value)) if value else ""
        if name == "outcome":
            return json.dumps({**asdict(value), "kind": value.kind.value, "serving": value.serving.value}) if value else ""
        return value

    def claim(self, worker: str, lease_seconds: float, max_attempts: int) -> Job | None:
        """The oldest queued job, or a running one whose worker stopped renewing its lease (it died): mark it
        running for ``worker``. A job that has run out of attempts fails instead."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, state, attempts FROM jobs WHERE state = ? OR (state = ? AND outcome = '' AND lease_until < ?) "
                "ORDER BY n LIMIT 1", [JobState.QUEUED.value, JobState.RUNNING.value, now]).fetchall()
            if not rows:
                return None
            row = rows[0]
            if row["attempts"] >= max_attempts:
                error = JobError("INTERNAL", f"the training worker stopped {row['attempts']} times before finishing; "
                                 "see the service log (out of memory?)", "WORKER_DIED")
                db.execute("UPDATE jobs SET state = ?, error = ?, finished_at = ?, worker = '', lease_until = 0 "
                           "WHERE id = ?", [JobState.FAILED.value, json.dumps(asdict(error)), now, row["id"]])
                self._event(db, row["id"], Level.ERROR, EventType.MESSAGE, error.message, state=JobState.FAILED)
                return None
            db.execute(
                "UPDATE jobs SET state = ?, worker = ?, lease_until = ?, attempts = attempts + 1, "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                [JobState.RUNNING.value, worker, now + lease_seconds, now, row["id"]])
            resumed = row["state"] == JobState.RUNNING.value
            message = ("The worker stopped; a new worker resumes the job from its last checkpoint" if resumed
                       else "Fine-tuning job started")
            self._event(db, row["id"], Level.WARNING if resumed else Level.INFO, EventType.MESSAGE, message,
                        state=None if resumed else JobState.RUNNING)
        return self.get_job(row["id"])

    def heartbeat(self, job_id: str, worker: str, lease_seconds: float) -> JobState | None:
        """Renew the lease and return the job's state (the API may have paused or cancelled it); None when
        another worker has taken the job over."""
        with self._tx() as db:
            changed = db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ?",
                                 [time.time() + lease_seconds, job_id, worker]).rowcount
            if not changed:
                return None
            row = db.execute("SELECT state FROM jobs WHERE id = ?", [job_id]).fetchone()
        return JobState(row["state"])

    def holder(self, job_id: str) -> str:
        """The worker holding a job ('' when none)."""
        rows = self._read("SELECT worker FROM jobs WHERE id = ?", [job_id])
        return rows[0]["worker"] if rows else ""

    def let_go(self, job_id: str, worker: str) -> None:
        """The worker stopped working on the job: it paused or was cancelled (it may be queued again), or the
        worker itself was asked to stop, which leaves the job RUNNING for the next worker to resume and, not
        being a failure, gives back the attempt."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET worker = '', lease_until = 0, "
                       "attempts = attempts - (CASE WHEN state = ? THEN 1 ELSE 0 END) WHERE id = ? AND worker = ?",
                       [JobState.RUNNING.value, job_id, worker])

    def release(self, worker: str) -> int:
        """Expire the leases of ``worker`` (it died), so its jobs are taken over at once."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET lease_until = 0 WHERE worker = ? AND state = ?",
                              [worker, JobState.RUNNING.value]).rowcount

    def set_progress(self, job_id: str, metrics: Metrics, message: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET progress = ?, trained_tokens = ?, progress_at = ? WHERE id = ?",
                       [json.dumps(asdict(metrics)), metrics.trained_tokens, time.time(), job_id])
            self._event(db, job_id, Level.INFO, EventType.METRICS, message, metrics=metrics)

    def set_outcome(self, job_id: str, worker: str, outcome: Outcome, message: str) -> bool:
        """Training is done: record what it left; the server registers it and succeeds the job."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET outcome = ?, trained_tokens = ?, worker = '', lease_until = 0 "
                "WHERE id = ? AND worker = ? AND state = ?",
                [self._column("outcome", outcome), outcome.trained_tokens, job_id, worker,
                 JobState.RUNNING.value]).rowcount
            if changed:
                self._event(db, job_id, Level.INFO, EventType.MESSAGE, message)
        return bool(changed)

    def trained(self) -> list[tuple[Job, Outcome]]:
        """Running jobs whose training is done and whose result awaits registration."""
        rows = self._read("SELECT * FROM jobs WHERE state = ? AND outcome != '' ORDER BY n", [JobState.RUNNING.value])
        out = []
        for row in rows:
            raw = json.loads(row["outcome"])
            out.append((_job(row), Outcome(**{**raw, "kind": ArtifactKind(raw["kind"]),
                                              "serving": Serving(raw["serving"])})))
        return out

    def running(self) -> list[Job]:
        return [_job(r) for r in self._read("SELECT * FROM jobs WHERE state = ? ORDER BY n", [JobState.RUNNING.value])]

    # -- events ------------------------------------------------------------------------------------

    def _event(
        self,
        db: sqlite3.Connection,
        job_id: str,
        level: Level,
        type_: EventType,
        message: str,
        *,
        metrics: Metrics | None = None,
        state: JobState | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        db.execute("UPDATE jobs SET last_sequence = last_sequence + 1 WHERE id = ?", [job_id])
        sequence = db.execute("SELECT last_sequence FROM jobs WHERE id = ?", [job_id]).fetchone()[0]
        db.execute(
            "INSERT INTO events (job_id, sequence, created_at, level, type, message, metrics, state, data) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [job_id, sequence, time.time(), level.value, type_.value, message,
             json.dumps(asdict(metrics)) if metrics else "", state.value if state else "", json.dumps(data or {})])

    def add_event(self, job_id: str, level: Level, message: str, data: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            self._event(db, job_id, level, EventType.MESSAGE, message, data=data)

    def events_after(self, job_id: str, sequence: int, limit: int = 500) -> list[Event]:
        """Oldest first, after ``sequence`` (the stream)."""
        rows = self._read("SELECT * FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                          [job_id, sequence, limit])
        return [_event(r) for r in rows]

    def list_events(self, job_id: str, before: int | None, limit: int) -> Page:
        """Newest first, before sequence ``before`` (the OpenAI listing)."""
        rows = self._read("SELECT * FROM events WHERE job_id = ? AND sequence < ? ORDER BY sequence DESC LIMIT ?",
                          [job_id, before if before is not None else 2**62, limit + 1])
        return Page([_event(r) for r in rows[:limit]], len(rows) > limit)

    # -- checkpoints -------------------------------------------------------------------------------

    def add_checkpoint(self, checkpoint: Checkpoint, message: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints (job_id, step, created_at, metrics, name) VALUES (?,?,?,?,?)",
                       [checkpoint.job_id, checkpoint.step, checkpoint.created_at, json.dumps(asdict(checkpoint.metrics)),
                        checkpoint.fine_tuned_model_checkpoint])
            self._event(db, checkpoint.job_id, Level.INFO, EventType.MESSAGE, message,
                        data={"checkpoint_id": checkpoint.id, "step": checkpoint.step})

    def list_checkpoints(self, job_id: str, before_step: int | None, limit: int) -> Page:
        rows = self._read("SELECT * FROM checkpoints WHERE job_id = ? AND step < ? ORDER BY step DESC LIMIT ?",
                          [job_id, before_step if before_step is not None else 2**62, limit + 1])
        items = [Checkpoint(r["job_id"], r["step"], r["created_at"], _metrics(r["metrics"]), r["name"])
                 for r in rows[:limit]]
        return Page(items, len(rows) > limit)

    # -- artifacts ---------------------------------------------------------------------------------

    def finish_with_artifact(self, job_id: str, artifact: Artifact, message: str) -> Job | None:
        """Register the artifact and succeed the job in one transaction: never one without the other."""
        a = artifact
        with self._tx() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, fine_tuned_model = ?, artifact_id = ?, finished_at = ? "
                "WHERE id = ? AND state = ?",
                [JobState.SUCCEEDED.value, a.model_id, a.id, time.time(), job_id, JobState.RUNNING.value]).rowcount
            if not changed:
                return None
            db.execute(
                "INSERT INTO artifacts (id, kind, job_id, method, base_model, base_model_revision, dataset_sha256, "
                "path, format, size_bytes, model_id, serving, served, metrics, config, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [a.id, a.kind.value, a.job_id, a.method, a.base_model, a.base_model_revision, a.dataset_sha256, a.path,
                 a.format, a.size_bytes, a.model_id, a.serving.value, int(a.served), json.dumps(a.metrics),
                 json.dumps(a.config), a.created_at])
            self._event(db, job_id, Level.INFO, EventType.MESSAGE, message, state=JobState.SUCCEEDED,
                        data={"artifact_id": a.id, "fine_tuned_model": a.model_id})
        return self.get_job(job_id)

    def get_artifact(self, name: str) -> Artifact | None:
        rows = self._read("SELECT * FROM artifacts WHERE id = ? OR (model_id != '' AND model_id = ?)", [name, name])
        return _artifact(rows[0]) if rows else None

    def list_artifacts(self, after: str, limit: int, job_id: str = "") -> Page:
        where, args = ("job_id = ?", [job_id]) if job_id else ("1", [])
        return self._page("artifacts", where, args, after, limit, _artifact)

    def all_artifacts(self) -> list[Artifact]:
        return [_artifact(r) for r in self._read("SELECT * FROM artifacts ORDER BY n")]

    def set_served(self, artifact_id: str, served: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE artifacts SET served = ? WHERE id = ?", [int(served), artifact_id])

    def delete_artifact(self, artifact_id: str) -> Artifact | None:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM artifacts WHERE id = ?", [artifact_id]).fetchall()
            if not rows:
                return None
            db.execute("DELETE FROM artifacts WHERE id = ?", [artifact_id])
        return replace(_artifact(rows[0]), served=False)
