"""Threads: their records (owner, metadata, status) and their state, which LangGraph's checkpointer keeps.

A thread learns its graph from its first run (``metadata.graph_id``, as LangGraph's Agent Server
records it); its state is read through that compiled graph, so pending tasks and interrupts come back
as LangGraph computes them.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from genai_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from genai_agent.graphs import CompiledGraphs
from genai_agent.records import Records
from genai_agent.state import checkpoint_thread, interrupts, jsonable, to_input, to_values
from genai_agent.types import (
    CheckpointRef,
    IfExists,
    Page,
    StateTask,
    StateValues,
    Thread,
    ThreadState,
    ThreadStatus,
)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")


def check_id(value: str, field_path: str) -> str:
    """Ids end up in URLs and checkpoint keys: letters, digits and ``._:@-``, up to 200 characters."""
    if not _ID.match(value):
        raise InvalidArgument.for_field(field_path, "use 1 to 200 letters, digits or ._:@- (starting with a letter "
                                        "or digit)")
    return value


def _ref(thread_id: str, config: dict[str, Any] | None) -> CheckpointRef | None:
    if not config:
        return None
    c = config.get("configurable", {})
    if not c.get("checkpoint_id"):
        return None
    return CheckpointRef(thread_id, str(c.get("checkpoint_ns", "")), str(c["checkpoint_id"]))


def _state(thread_id: str, snapshot: Any, include_values: bool = True) -> ThreadState:
    values = to_values(snapshot.values, snapshot.interrupts) if include_values else StateValues()
    tasks = tuple(StateTask(t.id, t.name, str(t.error or ""), interrupts(t.interrupts)) for t in snapshot.tasks)
    created = datetime.fromisoformat(snapshot.created_at) if snapshot.created_at else None
    return ThreadState(values, tuple(snapshot.next), _ref(thread_id, snapshot.config),
                       _ref(thread_id, snapshot.parent_config), jsonable(dict(snapshot.metadata or {})), tasks,
                       created)


class Threads:
    def __init__(self, records: Records, graphs: CompiledGraphs, checkpointer: Any) -> None:
        self._records = records
        self._graphs = graphs
        self._checkpointer = checkpointer

    async def create(self, tenant: str, thread_id: str = "", metadata: dict[str, Any] | None = None,
                     if_exists: IfExists = IfExists.RAISE) -> Thread:
        thread_id = check_id(thread_id, "thread_id") if thread_id else str(uuid.uuid4())
        existing = await self._records.get_thread(tenant, thread_id)
        if existing is not None:
            if if_exists is IfExists.DO_NOTHING:
                return existing
            raise AlreadyExists(f"thread {thread_id!r} exists", resource_type="thread", resource_name=thread_id)
        now = datetime.now(UTC)
        thread = Thread(thread_id, tenant, dict(metadata or {}), ThreadStatus.IDLE, now, now)
        await self._records.insert_thread(thread)
        return thread

    async def find(self, tenant: str, thread_id: str) -> Thread | None:
        return await self._records.get_thread(tenant, thread_id)

    async def get(self, tenant: str, thread_id: str) -> Thread:
        thread = await self._records.get_thread(tenant, thread_id)
        if thread is None:
            raise NotFound(f"no thread {thread_id!r}", resource_type="thread", resource_name=thread_id)
        return thread

    async def search(self, tenant: str, page: Page, *, metadata: dict[str, Any] | None = None,
                     status: ThreadStatus | None = None, ids: tuple[str, ...] = ()) -> tuple[list[Thread], int]:
        return await self._records.find_threads(tenant, page, metadata=metadata, status=status, ids=ids)

    async def update(self, tenant: str, thread_id: str, *, metadata: dict[str, Any] | None = None,
                     status: ThreadStatus | None = None) -> Thread:
        thread = await self.get(tenant, thread_id)
        changed = Thread(thread.thread_id, tenant, {**thread.metadata, **(metadata or {})}, status or thread.status,
                         thread.created_at, thread.updated_at)
        return await self._records.update_thread(changed)

    async def delete(self, tenant: str, thread_id: str) -> None:
        """Records and checkpoints; the caller (``Runs.delete_thread``) has stopped its runs first."""
        await self.get(tenant, thread_id)
        await self._checkpointer.adelete_thread(checkpoint_thread(tenant, thread_id))
        await self._records.delete_thread(tenant, thread_id)

    # -- state --------------------------------------------------------------------------------------------

    def _graph(self, thread: Thread) -> Any | None:
        graph_id = thread.metadata.get("graph_id")
        return self._graphs.get(graph_id) if graph_id else None

    @staticmethod
    def _config(thread: Thread, checkpoint_id: str = "") -> dict[str, Any]:
        configurable = {"thread_id": checkpoint_thread(thread.tenant, thread.thread_id)}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable}

    async def values(self, thread: Thread) -> StateValues:
        graph = self._graph(thread)
        if graph is None:
            return StateValues()
        snapshot = await graph.aget_state(self._config(thread))
        return to_values(snapshot.values, snapshot.interrupts)

    async def state(self, tenant: str, thread_id: str, checkpoint_id: str = "") -> ThreadState:
        thread = await self.get(tenant, thread_id)
        graph = self._graph(thread)
        if graph is None:
            if checkpoint_id:
                raise NotFound(f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}",
                               resource_type="checkpoint", resource_name=checkpoint_id)
            return ThreadState(StateValues(), (), None, None, {}, (), None)
        snapshot = await graph.aget_state(self._config(thread, checkpoint_id))
        if checkpoint_id and not snapshot.created_at:
            raise NotFound(f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}",
                           resource_type="checkpoint", resource_name=checkpoint_id)
        return _state(thread_id, snapshot)

    async def history(self, tenant: str, thread_id: str, *, limit: int = 10, before: str = "",
                      metadata: dict[str, Any] | None = None, include_values: bool = True) -> list[ThreadState]:
        thread = await self.get(tenant, thread_id)
        graph = self._graph(thread)
        if graph is None:
            return []
        states = []
        async for snapshot in graph.aget_state_history(
            self._config(thread), filter=metadata or None, before=self._config(thread, before) if before else None,
            limit=limit,
        ):
            states.append(_state(thread_id, snapshot, include_values))
        return states

    async def update_state(self, tenant: str, thread_id: str, values: StateValues, as_node: str = "",
                           checkpoint_id: str = "") -> CheckpointRef:
        thread = await self.get(tenant, thread_id)
        graph = self._graph(thread)
        if graph is None:
            raise FailedPrecondition(f"thread {thread_id!r} has not run yet, so its graph is unknown; run it first",
                                     resource_type="thread", resource_name=thread_id)
        try:
            config = await graph.aupdate_state(self._config(thread, checkpoint_id), to_input(values),
                                               as_node=as_node or None)
        except ValueError as exc:  # LangGraph: an unknown node, or no node to attribute the write to
            raise InvalidArgument.for_field("as_node", str(exc)) from None
        ref = _ref(thread_id, config)
        assert ref is not None
        await self._records.update_thread(thread)
        return ref
