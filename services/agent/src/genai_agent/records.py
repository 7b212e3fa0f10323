"""Assistants, threads and runs as rows of three SQL tables, in SQLite (default) or PostgreSQL.

LangGraph's checkpointer keeps each thread's state; these tables keep what LangGraph does not: who owns
a thread, its metadata and status, the runs and their outcome, the assistants created through the API.
One ``Records`` class holds every query; a ``Database`` (SQLite over aiosqlite, PostgreSQL over a
psycopg pool) runs them. The SQL is written once with ``?`` placeholders; the two dialects differ only in
the placeholder and in how a JSON metadata filter is written (``DIALECTS``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from genai_agent.codec import run_from_json, run_to_json, spec_from_json, spec_to_json
from genai_agent.types import Assistant, Page, Run, RunStatus, Thread, ThreadStatus

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS agent_assistants (
        tenant TEXT NOT NULL, assistant_id TEXT NOT NULL, graph_id TEXT NOT NULL, name TEXT NOT NULL,
        description TEXT NOT NULL, spec TEXT NOT NULL, metadata TEXT NOT NULL, version INTEGER NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (tenant, assistant_id))""",
    """CREATE TABLE IF NOT EXISTS agent_threads (
        tenant TEXT NOT NULL, thread_id TEXT NOT NULL, status TEXT NOT NULL, metadata TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (tenant, thread_id))""",
    """CREATE TABLE IF NOT EXISTS agent_runs (
        run_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, thread_id TEXT NOT NULL, assistant_id TEXT NOT NULL,
        status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS agent_runs_thread ON agent_runs (tenant, thread_id, created_at)",
    "CREATE INDEX IF NOT EXISTS agent_runs_status ON agent_runs (status)",
]


class Database(Protocol):
    """Runs SQL written with ``?`` placeholders."""

    dialect: str

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        ...


@dataclass(frozen=True)
class Dialect:
    """How a JSON column is matched against ``{"key": value, ...}``: one SQL condition per key."""

    condition: str  # with two placeholders: the key (as the dialect wants it) and the JSON-encoded value

    def key(self, name: str) -> str:
        return f'$."{name}"' if "json_extract" in self.condition else name


DIALECTS = {
    "sqlite": Dialect("json_extract({col}, ?) = json_extract(?, '$')"),
    "postgres": Dialect("({col})::jsonb -> (?)::text = (?)::jsonb"),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _match(dialect: str, column: str, metadata: dict[str, Any]) -> tuple[str, list[Any]]:
    d = DIALECTS[dialect]
    parts, params = [], []
    for key, value in metadata.items():
        parts.append(d.condition.format(col=column))
        params += [d.key(key), json.dumps(value)]
    return " AND ".join(parts), params


class Records:
    """Every query of the three tables; rows become domain values here and nowhere else."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        for statement in SCHEMA:
            await self._db.execute(statement)

    def _where(self, conditions: list[str], params: list[Any], column: str, metadata: dict[str, Any] | None) -> None:
        if metadata:
            sql, values = _match(self._db.dialect, column, metadata)
            conditions.append(sql)
            params.extend(values)

    # -- assistants -------------------------------------------------------------------------------------

    async def put_assistant(self, a: Assistant) -> None:
        await self._db.execute(
            "INSERT INTO agent_assistants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, assistant_id) "
            "DO UPDATE SET graph_id = excluded.graph_id, name = excluded.name, description = excluded.description, "
            "spec = excluded.spec, metadata = excluded.metadata, version = excluded.version, "
            "updated_at = excluded.updated_at",
            (a.tenant, a.assistant_id, a.graph_id, a.name, a.description, json.dumps(spec_to_json(a.spec)),
             json.dumps(a.metadata), a.version, (a.created_at or _now()).isoformat(),
             (a.updated_at or _now()).isoformat()))

    @staticmethod
    def _assistant(row: tuple[Any, ...]) -> Assistant:
        tenant, aid, graph, name, description, spec, metadata, version, created, updated = row
        return Assistant(aid, graph, name, spec_from_json(json.loads(spec)), tenant, description,
                         json.loads(metadata), version, _time(created), _time(updated))

    async def get_assistant(self, tenant: str, assistant_id: str) -> Assistant | None:
        rows = await self._db.fetch("SELECT * FROM agent_assistants WHERE tenant = ? AND assistant_id = ?",
                                    (tenant, assistant_id))
        return self._assistant(rows[0]) if rows else None

    async def find_assistants(self, tenant: str, *, name: str = "", graph_id: str = "",
                              metadata: dict[str, Any] | None = None) -> list[Assistant]:
        conditions, params = ["tenant = ?"], [tenant]
        if name:
            conditions.append("name = ?")
            params.append(name)
        if graph_id:
            conditions.append("graph_id = ?")
            params.append(graph_id)
        self._where(conditions, params, "metadata", metadata)
        rows = await self._db.fetch(
            f"SELECT * FROM agent_assistants WHERE {' AND '.join(conditions)} ORDER BY created_at, assistant_id",
            params)
        return [self._assistant(r) for r in rows]

    async def delete_assistant(self, tenant: str, assistant_id: str) -> bool:
        return bool(await self._db.execute("DELETE FROM agent_assistants WHERE tenant = ? AND assistant_id = ?",
                                           (tenant, assistant_id)))

    # -- threads ----------------------------------------------------------------------------------------

    async def insert_thread(self, t: Thread) -> None:
        await self._db.execute(
            "INSERT INTO agent_threads VALUES (?, ?, ?, ?, ?, ?)",
            (t.tenant, t.thread_id, t.status.value, json.dumps(t.metadata), t.created_at.isoformat(),
             t.updated_at.isoformat()))

    async def update_thread(self, t: Thread) -> Thread:
        t = replace(t, updated_at=_now())
        await self._db.execute(
            "UPDATE agent_threads SET status = ?, metadata = ?, updated_at = ? WHERE tenant = ? AND thread_id = ?",
            (t.status.value, json.dumps(t.metadata), t.updated_at.isoformat(), t.tenant, t.thread_id))
        return t

    @staticmethod
    def _thread(row: tuple[Any, ...]) -> Thread:
        tenant, tid, status, metadata, created, updated = row
        return Thread(tid, tenant, json.loads(metadata), ThreadStatus(status), _time(created), _time(updated))

    async def get_thread(self, tenant: str, thread_id: str) -> Thread | None:
        rows = await self._db.fetch("SELECT * FROM agent_threads WHERE tenant = ? AND thread_id = ?",
                                    (tenant, thread_id))
        return self._thread(rows[0]) if rows else None

    async def find_threads(self, tenant: str, page: Page, *, metadata: dict[str, Any] | None = None,
                           status: ThreadStatus | None = None, ids: Sequence[str] = ()) -> tuple[list[Thread], int]:
        conditions, params = ["tenant = ?"], [tenant]
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        if ids:
            conditions.append(f"thread_id IN ({', '.join('?' for _ in ids)})")
            params.extend(ids)
        self._where(conditions, params, "metadata", metadata)
        where = " AND ".join(conditions)
        (total,), = await self._db.fetch(f"SELECT COUNT(*) FROM agent_threads WHERE {where}", params)
        rows = await self._db.fetch(
            f"SELECT * FROM agent_threads WHERE {where} ORDER BY updated_at DESC, thread_id LIMIT ? OFFSET ?",
            [*params, page.limit, page.offset])
        return [self._thread(r) for r in rows], int(total)

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        await self._db.execute("DELETE FROM agent_runs WHERE tenant = ? AND thread_id = ?", (tenant, thread_id))
        await self._db.execute("DELETE FROM agent_threads WHERE tenant = ? AND thread_id = ?", (tenant, thread_id))

    # -- runs -------------------------------------------------------------------------------------------

    async def put_run(self, run: Run) -> Run:
        run = replace(run, updated_at=_now())
        await self._db.execute(
            "INSERT INTO agent_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
            "status = excluded.status, updated_at = excluded.updated_at, data = excluded.data",
            (run.run_id, run.tenant, run.thread_id, run.assistant_id, run.status.value, run.created_at.isoformat(),
             run.updated_at.isoformat(), json.dumps(run_to_json(run))))
        return run

    async def get_run(self, tenant: str, run_id: str) -> Run | None:
        rows = await self._db.fetch("SELECT data FROM agent_runs WHERE tenant = ? AND run_id = ?", (tenant, run_id))
        return run_from_json(json.loads(rows[0][0])) if rows else None

    async def find_runs(self, tenant: str, thread_id: str, page: Page, status: RunStatus | None = None) -> list[Run]:
        conditions, params = ["tenant = ?", "thread_id = ?"], [tenant, thread_id]
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        rows = await self._db.fetch(
            f"SELECT data FROM agent_runs WHERE {' AND '.join(conditions)} "
            "ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?", [*params, page.limit, page.offset])
        return [run_from_json(json.loads(r[0])) for r in rows]

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        """Runs of every tenant in these states, oldest first (what a restart must pick up)."""
        rows = await self._db.fetch(
            f"SELECT data FROM agent_runs WHERE status IN ({', '.join('?' for _ in statuses)}) ORDER BY created_at",
            [s.value for s in statuses])
        return [run_from_json(json.loads(r[0])) for r in rows]

    async def delete_run(self, tenant: str, run_id: str) -> None:
        await self._db.execute("DELETE FROM agent_runs WHERE tenant = ? AND run_id = ?", (tenant, run_id))
