"""Where runs, their events and samples, and registered tasks are kept: SQLite by default (a file under the
data directory), PostgreSQL when a DSN is set. One schema and one set of queries; the two differ only in
how they connect and in the parameter placeholder.

Writes that must stay consistent are single transactions: an event takes the run's next sequence number
and updates the run in the same transaction, so a stream never sees a gap; a batch of samples is written
at once, so a killed run resumes with whole samples (never half a batch).

    >>> store = SqliteStore(":memory:")
    >>> store.put_task("t", "task: t", 1.0)
    >>> store.get_task("t")
    'task: t'
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genai_evaluation.types import (
    ErrorInfo,
    Event,
    EventKind,
    MetricValue,
    Progress,
    Run,
    RunSpec,
    RunState,
    Sample,
    Usage,
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS eval_runs (
        id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, state TEXT NOT NULL, model TEXT NOT NULL,
        task_ids TEXT NOT NULL, create_time DOUBLE PRECISION NOT NULL, body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS eval_runs_created ON eval_runs (create_time)",
    """CREATE TABLE IF NOT EXISTS eval_events (
        run_id TEXT NOT NULL, sequence BIGINT NOT NULL, time DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
        payload TEXT NOT NULL, PRIMARY KEY (run_id, sequence))""",
    """CREATE TABLE IF NOT EXISTS eval_samples (
        run_id TEXT NOT NULL, task_id TEXT NOT NULL, example_index INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, example_index))""",
    """CREATE TABLE IF NOT EXISTS eval_tasks (
        id TEXT PRIMARY KEY, yaml TEXT NOT NULL, create_time DOUBLE PRECISION NOT NULL)""",
)


def run_to_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "spec": run.spec.to_json(), "state": run.state.value, "create_time": run.create_time,
        "update_time": run.update_time, "experiment_id": run.experiment_id, "variant": run.variant,
        "progress": asdict(run.progress), "results": [asdict(r) for r in run.results],
        "error": asdict(run.error) if run.error else None, "usage": asdict(run.usage),
        "last_sequence": run.last_sequence, "start_time": run.start_time, "end_time": run.end_time,
        "resume_count": run.resume_count,
    }


def run_from_json(data: dict[str, Any]) -> Run:
    return Run(
        id=data["id"], spec=RunSpec.from_json(data["spec"]), state=RunState(data["state"]),
        create_time=data["create_time"], update_time=data["update_time"], experiment_id=data["experiment_id"],
        variant=data["variant"], progress=Progress(**data["progress"]),
        results=tuple(MetricValue(**r) for r in data["results"]),
        error=ErrorInfo(**data["error"]) if data.get("error") else None, usage=Usage(**data["usage"]),
        last_sequence=data["last_sequence"], start_time=data["start_time"], end_time=data["end_time"],
        resume_count=data.get("resume_count", 0),
    )


class SqlStore:
    """The queries; subclasses provide a DB-API connection and the placeholder style."""

    placeholder = "?"
    name = "sql"

    def __init__(self, connection: Any) -> None:
        self._db = connection
        self._lock = threading.Lock()  # one connection, used by the servicer and every run's thread
        with self._lock:
            for statement in SCHEMA:
                self._db.execute(statement)
            self._db.commit()

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return list(self._db.execute(self._q(sql), params).fetchall())
            finally:
                self._db.commit()

    def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        with self._lock:
            try:
                for sql, params in statements:
                    self._db.execute(self._q(sql), params)
                self._db.commit()
            except Exception:
                self._db.rollback()
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs ---------------------------------------------------------------------------------------------

    def _upsert(self, run: Run) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT INTO eval_runs (id, experiment_id, state, model, task_ids, create_time, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
            (run.id, run.experiment_id, run.state.value, run.spec.model.name, json.dumps(list(run.spec.task_ids)),
             run.create_time, json.dumps(run_to_json(run))),
        )

    def put_run(self, run: Run) -> None:
        self._write([self._upsert(run)])

    def put_runs(self, runs: Sequence[Run]) -> None:
        self._write([self._upsert(r) for r in runs])

    def get_run(self, run_id: str) -> Run | None:
        rows = self._rows("SELECT body FROM eval_runs WHERE id = ?", (run_id,))
        return run_from_json(json.loads(rows[0][0])) if rows else None

    def list_runs(self, *, offset: int, limit: int, model: str = "", task_id: str = "", state: RunState | None = None,
                  experiment_id: str = "") -> list[Run]:
        where, params = [], []
        for column, value in (("model", model), ("experiment_id", experiment_id)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if task_id:
            where.append("task_ids LIKE ?")
            params.append(f'%{json.dumps(task_id)}%')
        sql = "SELECT body FROM eval_runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY create_time DESC, id LIMIT ? OFFSET ?"
        return [run_from_json(json.loads(r[0])) for r in self._rows(sql, [*params, limit, offset])]

    def unfinished_runs(self) -> list[Run]:
        rows = self._rows("SELECT body FROM eval_runs WHERE state IN (?, ?) ORDER BY create_time",
                          (RunState.QUEUED.value, RunState.RUNNING.value))
        return [run_from_json(json.loads(r[0])) for r in rows]

    # -- events -------------------------------------------------------------------------------------------

    def record(self, run: Run, kind: EventKind, payload: dict[str, Any], time: float) -> tuple[Run, Event]:
        """Store ``run`` (already changed by the caller) with its next event, in one transaction."""
        sequence = run.last_sequence + 1
        run = replace(run, last_sequence=sequence, update_time=time)
        event = Event(run.id, sequence, time, kind, payload)
        self._write([
            self._upsert(run),
            ("INSERT INTO eval_events (run_id, sequence, time, kind, payload) VALUES (?, ?, ?, ?, ?)",
             (run.id, sequence, time, kind.value, json.dumps(payload))),
        ])
        return run, event

    def events_after(self, run_id: str, sequence: int, limit: int = 500) -> list[Event]:
        rows = self._rows("SELECT sequence, time, kind, payload FROM eval_events WHERE run_id = ? AND sequence > ? "
                          "ORDER BY sequence LIMIT ?", (run_id, sequence, limit))
        return [Event(run_id, r[0], r[1], EventKind(r[2]), json.loads(r[3])) for r in rows]

    # -- samples ------------------------------------------------------------------------------------------

    def put_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        self._write([
            ("INSERT INTO eval_samples (run_id, task_id, example_index, body) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (run_id, task_id, example_index) DO UPDATE SET body = excluded.body",
             (run_id, s.task_id, s.index, json.dumps(s.to_json())))
            for s in samples
        ])

    def samples(self, run_id: str, task_id: str = "", offset: int = 0, limit: int | None = None) -> list[Sample]:
        sql = "SELECT body FROM eval_samples WHERE run_id = ?"
        params: list[Any] = [run_id]
        if task_id:
            sql += " AND task_id = ?"
            params.append(task_id)
        sql += " ORDER BY task_id, example_index"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [Sample.from_json(json.loads(r[0])) for r in self._rows(sql, params)]

    def sample_indexes(self, run_id: str, task_id: str) -> set[int]:
        rows = self._rows("SELECT example_index FROM eval_samples WHERE run_id = ? AND task_id = ?", (run_id, task_id))
        return {r[0] for r in rows}

    # -- registered tasks ---------------------------------------------------------------------------------

    def put_task(self, task_id: str, yaml_text: str, time: float) -> None:
        self._write([("INSERT INTO eval_tasks (id, yaml, create_time) VALUES (?, ?, ?) "
                      "ON CONFLICT (id) DO UPDATE SET yaml = excluded.yaml", (task_id, yaml_text, time))])

    def get_task(self, task_id: str) -> str | None:
        rows = self._rows("SELECT yaml FROM eval_tasks WHERE id = ?", (task_id,))
        return rows[0][0] if rows else None

    def tasks(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._rows("SELECT id, yaml FROM eval_tasks ORDER BY id")}


class SqliteStore(SqlStore):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        super().__init__(connection)


class PostgresStore(SqlStore):
    placeholder = "%s"
    name = "postgresql"

    def __init__(self, dsn: str) -> None:
        import psycopg  # only when a DSN is configured

        super().__init__(psycopg.connect(dsn))


def open_store(data_dir: Path, dsn: str) -> SqlStore:
    """PostgreSQL when ``dsn`` is set, else SQLite at ``data_dir/evaluation.sqlite3``."""
    return PostgresStore(dsn) if dsn else SqliteStore(data_dir / "evaluation.sqlite3")
