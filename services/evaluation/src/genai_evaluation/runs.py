"""Runs as resources: create (alone or as an experiment's variants), get, list, cancel, follow events, page
samples. Runs execute on worker threads, each with its own event loop and its own connections to the other
services, so a long evaluation never occupies the gRPC server's loop.

On start, runs left QUEUED or RUNNING by a stopped or killed process are queued again and resume where they
stopped. On stop, workers give up their current batch (its samples are not stored) and leave their runs
RUNNING for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from genai_core.errors import FailedPrecondition, InvalidArgument, NotFound
from genai_core.limits import EVALUATION
from genai_core.telemetry import with_provider
from opentelemetry import context as otel_context

from genai_evaluation import comparison, templates
from genai_evaluation.ports import BackendsFactory
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.runner import Runner, RunnerSettings, Stop
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.store import SqlStore
from genai_evaluation.types import Comparison, Event, EventKind, OutputType, Run, RunSpec, RunState, Sample, Variant

logger = logging.getLogger(__name__)

LIMITS = EVALUATION
POLL_SECONDS = 1.0  # events of runs executed by another replica (shared PostgreSQL) arrive by polling


@dataclass(frozen=True)
class RunsSettings:
    max_concurrent_runs: int = 2
    max_page_size: int = EVALUATION.max_page_size
    runner: RunnerSettings = RunnerSettings()


def _page(token: str, size: int, maximum: int) -> tuple[int, int]:
    if token and not (token.isascii() and token.isdigit()):
        raise InvalidArgument.for_field("page_token", "pass the next_page_token of a previous response")
    return int(token or 0), min(size or 100, maximum)


class Runs:
    def __init__(self, store: SqlStore, registry: TaskRegistry, backends: BackendsFactory, sandbox: Sandbox,
                 settings: RunsSettings, clock: Callable[[], float] = time.time,
                 tracer_provider: object | None = None) -> None:
        self.store = store
        self.registry = registry
        self.sandbox = sandbox
        self.settings = settings
        self._backends = backends
        self._clock = clock
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._cancelled: set[str] = set()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._checker = None  # a Backends on the server's loop, to check models when runs are created
        self._tracer_provider = tracer_provider  # a worker thread starts with an empty tracing context

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Resume unfinished runs and start the workers; call on the server's event loop."""
        self._loop = asyncio.get_running_loop()
        self._checker = self._backends()
        for run in self.store.unfinished_runs():
            logger.info("resuming run %s (%s)", run.id, run.state.value)
            self._queue.put(run.id)
        for i in range(self.settings.max_concurrent_runs):
            thread = threading.Thread(target=self._work, name=f"evaluation-run-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        if self._checker is not None:
            await self._checker.close()

    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None or self._stopping.is_set():
                return
            try:
                asyncio.run(self._execute(run_id))
            except Exception:  # noqa: BLE001 - a worker outlives any one run
                logger.exception("worker failed on run %s", run_id)

    async def _execute(self, run_id: str) -> None:
        otel_context.attach(with_provider(otel_context.get_current(), self._tracer_provider))
        backends = self._backends()
        try:
            runner = Runner(self.store, self.registry, backends, self.sandbox, self.settings.runner, self._notify,
                            lambda: self._stop_for(run_id), self._clock)
            await runner.execute(run_id)
        finally:
            self._cancelled.discard(run_id)
            await backends.close()

    def _stop_for(self, run_id: str) -> Stop | None:
        if run_id in self._cancelled:
            return Stop(cancelled=True)
        if self._stopping.is_set():
            return Stop(cancelled=False)
        return None

    def _notify(self, run_id: str) -> None:
        """Wake the event streams of ``run_id`` (called from worker threads)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            for waiter in self._waiters.get(run_id, ()):
                waiter.set()

        loop.call_soon_threadsafe(wake)

    # -- create -------------------------------------------------------------------------------------------

    async def _check(self, spec: RunSpec) -> None:
        """Every rule about a spec's values; references to tasks, models and collections must resolve."""
        if not spec.task_ids:
            raise InvalidArgument.for_field("spec.task_ids", "name at least one task")
        if len(set(spec.task_ids)) != len(spec.task_ids):
            raise InvalidArgument.for_field("spec.task_ids", "each task only once")
        tasks = [await asyncio.to_thread(self.registry.get, t) for t in spec.task_ids]
        gen = spec.generation
        for value, field, low, high in (
            (spec.limit, "spec.limit", 1, LIMITS.max_examples),
            (spec.few_shot, "spec.few_shot", 0, LIMITS.max_few_shot),
            (gen.max_new_tokens, "spec.generation.max_new_tokens", 1, LIMITS.max_new_tokens),
            (gen.samples_per_example, "spec.generation.samples_per_example", 1, LIMITS.max_samples_per_example),
            (gen.temperature, "spec.generation.temperature", 0, LIMITS.max_temperature),
            (gen.top_p, "spec.generation.top_p", 0, 1),
            (spec.retrieval.top_k, "spec.retrieval.top_k", 1, LIMITS.max_top_k),
        ):
            if value is not None and not low <= value <= high:
                raise InvalidArgument.for_field(field, f"must be between {low} and {high}")
        if spec.prompt_template is not None:
            templates.check(spec.prompt_template, "spec.prompt_template")
        for ref, field in ((spec.model, "spec.model"), (spec.judge, "spec.judge")):
            if ref is not None and ref.endpoint is not None:
                if not ref.endpoint.base_url.startswith(("http://", "https://")):
                    raise InvalidArgument.for_field(f"{field}.endpoint.base_url", "an http:// or https:// URL")
                if not ref.endpoint.model:
                    raise InvalidArgument.for_field(f"{field}.endpoint.model", "name the model to send")
        assert self._checker is not None, "start() first"
        needs_model = any(t.output_type != OutputType.RETRIEVAL for t in tasks)
        if needs_model:
            await self._checker.model(spec.model).check()
            if spec.judge is not None:
                await self._checker.model(spec.judge).check()
        if spec.retrieval.collection:
            tenant = spec.retrieval.tenant or "default"
            if await self._checker.retriever().document_count(tenant, spec.retrieval.collection) is None:
                raise NotFound(f"no collection {spec.retrieval.collection!r} in tenant {tenant!r}",
                               resource_type="collection", resource_name=spec.retrieval.collection)

    def _new(self, spec: RunSpec, experiment_id: str = "", variant: str = "") -> Run:
        now = self._clock()
        return Run(id=f"run-{uuid.uuid4().hex[:16]}", spec=spec, state=RunState.QUEUED, create_time=now,
                   update_time=now, experiment_id=experiment_id, variant=variant)

    async def _enqueue(self, runs: Sequence[Run]) -> list[Run]:
        await asyncio.to_thread(self.store.put_runs, runs)
        out = []
        for run in runs:
            run, _ = await asyncio.to_thread(self.store.record, run, EventKind.STATE_CHANGE,
                                             {"previous": "unspecified", "state": RunState.QUEUED.value}, self._clock())
            self._queue.put(run.id)
            out.append(run)
        return out

    async def create(self, spec: RunSpec) -> Run:
        await self._check(spec)
        return (await self._enqueue([self._new(spec)]))[0]

    async def create_experiment(self, base: RunSpec, variants: Sequence[Variant]) -> tuple[str, list[Run]]:
        if len(variants) < 2:
            raise InvalidArgument.for_field("variants", "an experiment compares at least two variants")
        names = [v.name for v in variants]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise InvalidArgument.for_field("variants", "every variant needs a unique, non-empty name")
        if all(v.model is None and v.prompt_template is None and v.search_mode is None for v in variants):
            raise InvalidArgument.for_field("variants", "variants must change the model, prompt or search mode")
        specs = []
        for v in variants:
            spec = base
            if v.model is not None:
                spec = replace(spec, model=v.model)
            if v.prompt_template is not None:
                spec = replace(spec, prompt_template=v.prompt_template)
            if v.search_mode is not None:
                spec = replace(spec, retrieval=replace(spec.retrieval, mode=v.search_mode))
            await self._check(spec)
            specs.append(replace(spec, labels={**spec.labels, "variant": v.name}))
        experiment_id = f"exp-{uuid.uuid4().hex[:12]}"
        runs = await self._enqueue([self._new(s, experiment_id, v.name) for s, v in zip(specs, variants, strict=True)])
        return experiment_id, runs

    # -- read ---------------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> Run:
        run = await asyncio.to_thread(self.store.get_run, run_id)
        if run is None:
            raise NotFound(f"no evaluation run {run_id!r}", resource_type="evaluation_run", resource_name=run_id)
        return run

    async def list(self, page_token: str, page_size: int, *, model: str = "", task_id: str = "",
                   state: RunState | None = None, experiment_id: str = "") -> tuple[list[Run], str]:
        offset, size = _page(page_token, page_size, self.settings.max_page_size)
        runs = await asyncio.to_thread(lambda: self.store.list_runs(offset=offset, limit=size + 1, model=model,
                                                                    task_id=task_id, state=state,
                                                                    experiment_id=experiment_id))
        return runs[:size], str(offset + size) if len(runs) > size else ""

    async def samples(self, run_id: str, task_id: str, page_token: str, page_size: int) -> tuple[list[Sample], str]:
        await self.get(run_id)
        offset, size = _page(page_token, page_size, self.settings.max_page_size)
        found = await asyncio.to_thread(self.store.samples, run_id, task_id, offset, size + 1)
        return found[:size], str(offset + size) if len(found) > size else ""

    async def cancel(self, run_id: str, wait: float = 15.0) -> Run:
        run = await self.get(run_id)
        if run.state.terminal:
            return run
        self._cancelled.add(run_id)
        if run.state == RunState.QUEUED:
            # Not started: it ends here; the worker that takes it from the queue finds it terminal.
            previous = run.state
            run = replace(run, state=RunState.CANCELLED, end_time=self._clock())
            run, _ = await asyncio.to_thread(self.store.record, run, EventKind.STATE_CHANGE,
                                             {"previous": previous.value, "state": run.state.value}, self._clock())
            self._notify(run_id)
            return run
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            run = await self.get(run_id)
            if run.state.terminal:
                return run
            await asyncio.sleep(0.1)
        return run

    async def events(self, run_id: str, after: int) -> AsyncIterator[Event]:
        """Recorded events after ``after``, then live ones, until the run's terminal state change."""
        await self.get(run_id)
        waiter = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(waiter)
        try:
            while True:
                waiter.clear()
                events = await asyncio.to_thread(self.store.events_after, run_id, after)
                for event in events:
                    yield event
                    after = event.sequence
                    if event.kind == EventKind.STATE_CHANGE and RunState(event.payload["state"]).terminal:
                        return
                if not events:
                    run = await self.get(run_id)
                    if run.state.terminal and run.last_sequence <= after:
                        return
                    try:
                        await asyncio.wait_for(waiter.wait(), POLL_SECONDS)
                    except TimeoutError:
                        pass
        finally:
            self._waiters[run_id].discard(waiter)
            if not self._waiters[run_id]:
                del self._waiters[run_id]

    async def compare(self, run_ids: Sequence[str], baseline: str, task_id: str, confidence: float, resamples: int,
                      include_differences: bool) -> tuple[str, list[Comparison]]:
        if len(run_ids) < 2 or len(set(run_ids)) != len(run_ids):
            raise InvalidArgument.for_field("run_ids", "name at least two different runs")
        if not 0.5 <= confidence < 1:
            raise InvalidArgument.for_field("confidence", "must be in [0.5, 1)")
        if not LIMITS.min_resamples <= resamples <= LIMITS.max_resamples:
            raise InvalidArgument.for_field("resamples", f"must be between {LIMITS.min_resamples} and "
                                                         f"{LIMITS.max_resamples}")
        baseline = baseline or run_ids[0]
        if baseline not in run_ids:
            raise InvalidArgument.for_field("baseline_run_id", "must be one of run_ids")
        runs = {r: await self.get(r) for r in run_ids}
        common = set.intersection(*(set(r.spec.task_ids) for r in runs.values()))
        if task_id:
            if task_id not in common:
                raise FailedPrecondition(f"not every run includes task {task_id!r}", resource_type="task",
                                         resource_name=task_id)
            common = {task_id}
        if not common:
            raise FailedPrecondition("the runs share no task; compare runs of the same task", reason="NO_COMMON_TASK")
        out = []
        for task in sorted(common):
            spec = await asyncio.to_thread(self.registry.get, task)
            samples = {r: await asyncio.to_thread(self.store.samples, r, task) for r in run_ids}
            for other in run_ids:
                if other == baseline:
                    continue
                out += comparison.compare(samples[baseline], samples[other], other, task, spec.score_names,
                                          confidence=confidence, resamples=resamples,
                                          include_differences=include_differences)
        return baseline, out

