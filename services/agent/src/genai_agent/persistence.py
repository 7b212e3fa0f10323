"""Where threads, runs, assistants and checkpoints persist: SQLite files under the data directory (the
default, nothing to run) or a PostgreSQL server (``GENAI_AGENT_POSTGRES_DSN``).

``open_store(settings)`` picks the backend from ``BACKENDS`` and returns a ``Store``: the records
``Database`` of ``records.Records`` and LangGraph's checkpointer (langgraph-checkpoint-sqlite's
``AsyncSqliteSaver`` or langgraph-checkpoint-postgres's ``AsyncPostgresSaver``), both set up, plus how
to close them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SqliteDatabase:
    """``records.Database`` over one aiosqlite connection (aiosqlite serializes its calls on one thread)."""

    dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params))
        await self._conn.commit()
        return cursor.rowcount

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]


class PostgresDatabase:
    """``records.Database`` over a psycopg connection pool (autocommit); ``?`` becomes ``%s``."""

    dialect = "postgres"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql.replace("?", "%s"), tuple(params))
            return cursor.rowcount

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        from psycopg.rows import tuple_row

        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(sql.replace("?", "%s"), tuple(params))
            return list(await cursor.fetchall())


@dataclass
class Store:
    kind: str  # "sqlite" or "postgres"
    database: Any  # records.Database
    checkpointer: Any  # a LangGraph BaseCheckpointSaver
    close: Callable[[], Awaitable[None]]


async def open_sqlite(data_dir: Path, _: str) -> Store:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    data_dir.mkdir(parents=True, exist_ok=True)
    records = await aiosqlite.connect(str(data_dir / "agent.sqlite"))
    checkpoints = await aiosqlite.connect(str(data_dir / "checkpoints.sqlite"))
    for conn in (records, checkpoints):
        await conn.execute("PRAGMA journal_mode=WAL")
    saver = AsyncSqliteSaver(checkpoints)
    await saver.setup()

    async def close() -> None:
        await records.close()
        await checkpoints.close()

    return Store("sqlite", SqliteDatabase(records), saver, close)


async def open_postgres(_: Path, dsn: str) -> Store:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    # The saver needs dict rows, autocommit and no prepared statements (it works behind PgBouncer too).
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    await pool.open(wait=True, timeout=30)
    saver = AsyncPostgresSaver(pool)
    await saver.setup()
    return Store("postgres", PostgresDatabase(pool), saver, pool.close)


BACKENDS: dict[str, Callable[[Path, str], Awaitable[Store]]] = {"sqlite": open_sqlite, "postgres": open_postgres}


async def open_store(data_dir: Path, postgres_dsn: str = "") -> Store:
    return await BACKENDS["postgres" if postgres_dsn else "sqlite"](data_dir, postgres_dsn)
