"""Runs: create (background, streamed, stateless), one active run per thread, cancel, join, wait, restart.

* A run is recorded as pending, then executes as an asyncio task once a slot is free (at most
  ``max_concurrent_runs`` at once) and the thread's earlier runs are done.
* A thread has one active run by default: a second run is rejected (ABORTED, a conflict), or with
  ``multitask_strategy`` enqueued behind it or interrupting it (``rollback`` is not supported: the
  checkpointers shipped here cannot delete one run's checkpoints).
* Every run ends with a status in the database and a ``RunEnd`` as its last event; a stream that closes
  early cancels its run unless ``on_disconnect`` says to continue.
* A restart loses the runs that were executing: at start they are marked as failed with
  ``SERVICE_RESTARTED`` (their threads keep the last checkpoint). A run stopped at an interrupt is not
  lost: its state is checkpointed, and a new run with a resume command continues it, after a restart too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from genai_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unimplemented

from genai_agent.approval import parse_decisions
from genai_agent.assistants import Assistants
from genai_agent.events import EventLog, EventLogs
from genai_agent.execution import Executor, Outcome
from genai_agent.records import Records
from genai_agent.threads import Threads, check_id
from genai_agent.types import (
    AgentSpec,
    Assistant,
    ErrorEvent,
    MultitaskStrategy,
    OnDisconnect,
    Page,
    Run,
    RunEnd,
    RunError,
    RunEvent,
    RunMetadata,
    RunSpec,
    RunStatus,
    StateValues,
    StreamMode,
    ThreadStatus,
)

logger = logging.getLogger(__name__)

ALL_MODES = frozenset(StreamMode)
_THREAD_STATUS = {
    RunStatus.SUCCESS: ThreadStatus.IDLE,
    RunStatus.CANCELLED: ThreadStatus.IDLE,
    RunStatus.INTERRUPTED: ThreadStatus.INTERRUPTED,
    RunStatus.ERROR: ThreadStatus.ERROR,
    RunStatus.TIMEOUT: ThreadStatus.ERROR,
}


@dataclass(frozen=True)
class RunLimits:
    default_max_steps: int = 25
    max_steps_limit: int = 200
    max_concurrent_runs: int = 4


@dataclass
class _Active:
    """A run of this process that has not ended: its task, log and what it runs with."""

    run: Run
    task: asyncio.Task[None]
    log: EventLog
    stop_reason: RunError | None = None


class Runs:
    def __init__(self, records: Records, assistants: Assistants, threads: Threads, executor: Executor,
                 logs: EventLogs, limits: RunLimits) -> None:
        self._records = records
        self._assistants = assistants
        self._threads = threads
        self._executor = executor
        self._logs = logs
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrent_runs)
        self._active: dict[str, _Active] = {}
        # One lock per thread while anyone holds it: decides "is the thread busy" without races, and is
        # dropped when unused, so a long-lived service does not keep one per thread it ever saw.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    # -- creating -----------------------------------------------------------------------------------------

    def _lock(self, tenant: str, thread_id: str) -> asyncio.Lock:
        lock = self._locks.get((tenant, thread_id))
        if lock is None:
            lock = self._locks[(tenant, thread_id)] = asyncio.Lock()
        return lock

    def _thread_runs(self, tenant: str, thread_id: str) -> list[_Active]:
        return [a for a in self._active.values() if a.run.tenant == tenant and a.run.thread_id == thread_id]

    def _steps(self, spec: RunSpec, agent: AgentSpec) -> int:
        steps = spec.max_steps or agent.max_steps or self._limits.default_max_steps
        if not 1 <= steps <= self._limits.max_steps_limit:
            raise InvalidArgument.for_field("max_steps", f"use 1 to {self._limits.max_steps_limit}")
        return steps

    async def _check_resume(self, tenant: str, spec: RunSpec) -> None:
        """A resume needs an interrupt to answer, and an approval's decisions must make sense: checked now,
        so a bad answer is a 400 for the caller, not a failed run."""
        state = await self._threads.state(tenant, spec.thread_id)
        pending = state.values.interrupts
        if not pending:
            raise FailedPrecondition(f"thread {spec.thread_id!r} has no interrupt to resume; send input instead",
                                     resource_type="thread", resource_name=spec.thread_id)
        answer = spec.command.resume if spec.command else None
        by_id = isinstance(answer, dict) and answer and set(answer) <= {i.id for i in pending}
        for interrupt in pending:
            if interrupt.approval is None:
                continue
            value = answer.get(interrupt.id) if by_id else answer
            if by_id and interrupt.id not in answer:
                continue
            parse_decisions(value, interrupt.approval.tool_calls)

    async def create(self, tenant: str, spec: RunSpec) -> Run:
        """Record the run and start it (or queue it); return it, usually pending."""
        if spec.input is not None and spec.command is not None:
            raise InvalidArgument.for_field("command", "send either input or a command, not both")
        if spec.multitask_strategy is MultitaskStrategy.ROLLBACK:
            raise Unimplemented("multitask_strategy rollback is not supported: the checkpointers cannot delete one "
                                "run's checkpoints; use interrupt (cancel the active run) or enqueue")
        assistant = await self._assistants.resolve(tenant, spec.assistant_id)
        agent = self._assistants.effective_spec(assistant, spec.configurable)
        max_steps = self._steps(spec, agent)
        stateless = not spec.thread_id
        thread_id = check_id(spec.thread_id, "thread_id") if spec.thread_id else str(uuid.uuid4())
        spec = replace(spec, thread_id=thread_id)
        async with self._lock(tenant, thread_id):
            thread = await self._threads.find(tenant, thread_id)
            if thread is None:
                if not (stateless or spec.create_thread):
                    raise NotFound(f"no thread {thread_id!r}; create it first or set if_not_exists/create_thread",
                                   resource_type="thread", resource_name=thread_id)
                thread = await self._threads.create(tenant, thread_id, {"stateless": True} if stateless else {})
            graph = thread.metadata.get("graph_id")
            if graph and graph != assistant.graph_id:
                raise InvalidArgument.for_field("assistant_id", f"thread {thread_id!r} runs the {graph} graph; use an "
                                                f"assistant of that graph, or a new thread")
            earlier = self._thread_runs(tenant, thread_id)
            if earlier and spec.multitask_strategy is MultitaskStrategy.REJECT:
                raise Aborted(f"thread {thread_id!r} already has an active run ({earlier[-1].run.run_id}); wait for "
                              "it, cancel it, or send multitask_strategy enqueue or interrupt",
                              reason="THREAD_BUSY", resource_type="thread", resource_name=thread_id)
            if earlier and spec.multitask_strategy is MultitaskStrategy.INTERRUPT:
                for active in earlier:
                    await self._stop(active, None)
                earlier = []
            if spec.command is not None and spec.command.has_resume and not earlier:
                await self._check_resume(tenant, spec)
            now = datetime.now(UTC)
            run = Run(run_id=str(uuid.uuid4()), thread_id=thread_id, tenant=tenant,
                      assistant_id=assistant.assistant_id, status=RunStatus.PENDING, created_at=now, updated_at=now,
                      spec=spec, graph_id=assistant.graph_id, stateless=stateless, max_steps=max_steps)
            run = await self._records.put_run(run)
            await self._threads.update(tenant, thread_id, status=ThreadStatus.BUSY,
                                       metadata={"graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id})
            log = self._logs.open(run.run_id)
            log.append(RunMetadata(run.run_id, thread_id, assistant.assistant_id, assistant.graph_id, run.attempt))
            after = [a.task for a in earlier]
            task = asyncio.create_task(self._drive(run, assistant, agent, log, after), name=f"run-{run.run_id}")
            self._active[run.run_id] = _Active(run, task, log)
        return run

    # -- executing ----------------------------------------------------------------------------------------

    async def _drive(self, run: Run, assistant: Assistant, agent: AgentSpec, log: EventLog,
                     after: list[asyncio.Task[None]]) -> None:
        queued = time.perf_counter()
        outcome: Outcome | None = None
        status, error = RunStatus.CANCELLED, None
        try:
            if after:
                await asyncio.wait(after)
            async with self._slots:
                run = await self._records.put_run(replace(run, status=RunStatus.RUNNING))
                outcome = await self._executor.execute(run, assistant, agent, log.append)
                status, error = outcome.status, outcome.error
        except asyncio.CancelledError:
            active = self._active.get(run.run_id)
            reason = active.stop_reason if active else None
            status, error = (RunStatus.ERROR, reason) if reason else (
                RunStatus.CANCELLED, RunError("CANCELLED", "RUN_CANCELLED", "the run was cancelled"))
        except Exception:  # noqa: BLE001 - the executor reports failures itself; this is a bug, not a run error
            logger.exception("run %s crashed", run.run_id)
            status, error = RunStatus.ERROR, RunError("INTERNAL", "INTERNAL", "the run failed with an internal error")
        finally:
            await asyncio.shield(self._finish(run, outcome, status, error, log, time.perf_counter() - queued))

    async def _finish(self, run: Run, outcome: Outcome | None, status: RunStatus, error: RunError | None,
                      log: EventLog, elapsed: float) -> None:
        """Record the outcome, then end the log: whoever sees the RunEnd reads the final run and thread."""
        try:
            if outcome is not None:
                run = replace(run, usage=outcome.usage, steps=outcome.steps, interrupts=outcome.interrupts,
                              timings=replace(outcome.timings, queue_s=max(0.0, elapsed - outcome.timings.total_s)))
            if error is not None and status is not RunStatus.CANCELLED:
                log.append(ErrorEvent(error))
            run = replace(run, status=status, error=error, last_sequence=log.last_sequence + 1)
            await self._records.put_run(run)
            self._active.pop(run.run_id, None)
            if run.stateless and not run.spec.keep_thread:
                await self._threads.delete(run.tenant, run.thread_id)
            elif not self._thread_runs(run.tenant, run.thread_id):
                await self._threads.update(run.tenant, run.thread_id, status=_THREAD_STATUS[status])
        except Exception:  # noqa: BLE001 - never leave a run half-finished silently
            logger.exception("recording the end of run %s failed", run.run_id)
        finally:
            self._active.pop(run.run_id, None)
            log.append(RunEnd(status))

    async def _stop(self, active: _Active, reason: RunError | None, wait: bool = True) -> None:
        active.stop_reason = reason
        active.task.cancel()
        if wait:
            await asyncio.wait({active.task})

    # -- reading and following ----------------------------------------------------------------------------

    async def get(self, tenant: str, thread_id: str, run_id: str) -> Run:
        active = self._active.get(run_id)
        run = await self._records.get_run(tenant, run_id)
        if run is None or (thread_id and run.thread_id != thread_id):
            raise NotFound(f"no run {run_id!r} on thread {thread_id!r}", resource_type="run", resource_name=run_id)
        if active is not None:
            run = replace(run, last_sequence=active.log.last_sequence)
        return run

    async def list(self, tenant: str, thread_id: str, page: Page, status: RunStatus | None = None) -> list[Run]:
        await self._threads.get(tenant, thread_id)
        return await self._records.find_runs(tenant, thread_id, page, status)

    async def stream(self, tenant: str, spec: RunSpec, modes: frozenset[StreamMode]) -> AsyncIterator[RunEvent]:
        """Create a run and follow its events; closing the iterator early cancels the run unless
        ``spec.on_disconnect`` is continue. The run is created before the first event is yielded."""
        modes = modes or frozenset({StreamMode.VALUES})
        run = await self.create(tenant, replace(spec, stream_modes=spec.stream_modes or modes))
        return self._follow_then_cancel(run, 0, modes, spec.on_disconnect is OnDisconnect.CANCEL)

    async def _follow_then_cancel(self, run: Run, after: int, modes: frozenset[StreamMode],
                                  cancel: bool) -> AsyncIterator[RunEvent]:
        log = self._logs.get(run.run_id)
        finished = False
        try:
            if log is None:
                async for event in self._replay(run, after, modes):
                    yield event
            else:
                async for event in log.follow(after, modes):
                    yield event
            finished = True
        finally:
            active = self._active.get(run.run_id)
            if cancel and not finished and active is not None:
                await self._stop(active, None, wait=False)

    async def _replay(self, run: Run, after: int, modes: frozenset[StreamMode]) -> AsyncIterator[RunEvent]:
        """The events of a run whose log is gone (it ended long ago, or before a restart): its metadata,
        the thread's state (when it still exists) and its end."""
        now = datetime.now(UTC)
        yield RunEvent(0, now, RunMetadata(run.run_id, run.thread_id, run.assistant_id, run.graph_id, run.attempt))
        last = max(run.last_sequence, 1)
        if StreamMode.VALUES in modes and after < last - 1:
            thread = await self._threads.find(run.tenant, run.thread_id)
            if thread is not None:
                yield RunEvent(last - 1, now, await self._threads.values(thread))
        if after < last:
            if run.error is not None:
                yield RunEvent(last, now, ErrorEvent(run.error))
            yield RunEvent(last, now, RunEnd(run.status))

    async def join(self, tenant: str, thread_id: str, run_id: str, after: int = 0,
                   modes: frozenset[StreamMode] | None = None, cancel_on_disconnect: bool = False
                   ) -> AsyncIterator[RunEvent]:
        run = await self.get(tenant, thread_id, run_id)
        chosen = modes or run.spec.stream_modes or ALL_MODES
        return self._follow_then_cancel(run, after, chosen, cancel_on_disconnect)

    async def wait(self, tenant: str, thread_id: str, run_id: str) -> tuple[Run, StateValues | None]:
        """Block until the run ends or is interrupted: the run and the thread's values at that point."""
        run = await self.get(tenant, thread_id, run_id)
        final: StateValues | None = None
        end, error = run.status, run.error
        events = await self.join(tenant, thread_id, run_id, modes=frozenset({StreamMode.VALUES}))
        async for event in events:
            if isinstance(event.payload, StateValues):
                final = event.payload
            elif isinstance(event.payload, ErrorEvent):
                error = event.payload.error
            elif isinstance(event.payload, RunEnd):
                end = event.payload.status
        stored = await self._records.get_run(tenant, run_id)  # gone with a stateless run's thread
        return stored or replace(run, status=end, error=error), final

    # -- stopping -----------------------------------------------------------------------------------------

    async def cancel(self, tenant: str, thread_id: str, run_id: str, wait: bool = False) -> Run:
        run = await self.get(tenant, thread_id, run_id)
        active = self._active.get(run_id)
        if active is not None:
            await self._stop(active, None, wait=wait)
            if wait:
                run = await self.get(tenant, thread_id, run_id)
        return run

    async def delete(self, tenant: str, thread_id: str, run_id: str) -> None:
        run = await self.get(tenant, thread_id, run_id)
        if run.run_id in self._active:
            raise FailedPrecondition(f"run {run_id!r} is {run.status.value}; cancel it before deleting it",
                                     resource_type="run", resource_name=run_id)
        await self._records.delete_run(tenant, run_id)
        self._logs.drop(run_id)

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        await self._threads.get(tenant, thread_id)
        for active in self._thread_runs(tenant, thread_id):
            await self._stop(active, None)
        await self._threads.delete(tenant, thread_id)

    async def recover(self) -> int:
        """At start: the runs a previous process left pending or running are failed (their tasks died
        with it); their threads keep the last checkpoint. Returns how many."""
        lost = await self._records.runs_with_status([RunStatus.PENDING, RunStatus.RUNNING])
        error = RunError("UNAVAILABLE", "SERVICE_RESTARTED", "the agent service restarted while this run was "
                         "active; its thread keeps the state of the last checkpoint: start a new run to continue")
        for run in lost:
            await self._records.put_run(replace(run, status=RunStatus.ERROR, error=error))
            if await self._threads.find(run.tenant, run.thread_id) is not None:
                await self._threads.update(run.tenant, run.thread_id, status=ThreadStatus.ERROR)
        return len(lost)

    async def close(self) -> None:
        """At shutdown: stop the active runs, recording why."""
        error = RunError("UNAVAILABLE", "SERVICE_STOPPED", "the agent service stopped while this run was active; "
                         "its thread keeps the state of the last checkpoint: start a new run to continue")
        for active in list(self._active.values()):
            await self._stop(active, error)
