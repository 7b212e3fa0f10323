"""Executes one run: task after task, batch after batch, storing each batch's samples before the next starts.

A run that is stopped (service shutdown) or killed resumes where it stopped: examples whose samples are
stored are skipped, and a task's metrics are computed over all of its stored samples. A cancelled run ends
in CANCELLED with the metrics of what was scored. The runner works on its own event loop (a worker thread
of ``runs``), never on the gRPC server's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genai_core.errors import GenAIError

from genai_evaluation import generation, metrics, prompts, rag, retrieval_eval, scoring
from genai_evaluation.context import Evaluator, TaskContext
from genai_evaluation.ports import Backends
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.store import SqlStore
from genai_evaluation.types import (
    ErrorInfo,
    EventKind,
    MetricValue,
    OutputType,
    Progress,
    Run,
    RunState,
    Sample,
)

logger = logging.getLogger(__name__)

PER_EXAMPLE = {OutputType.GENERATE_UNTIL, OutputType.RAG}  # long, uneven calls: one example per unit
EVALUATORS: dict[OutputType, Evaluator] = {
    **scoring.EVALUATORS,
    OutputType.GENERATE_UNTIL: generation.generate_until,
    OutputType.RETRIEVAL: retrieval_eval.evaluate,
    OutputType.RAG: rag.evaluate,
}


@dataclass(frozen=True)
class RunnerSettings:
    batch_size: int = 16  # examples per stored batch (and per progress event)
    max_inflight: int = 8  # model calls in flight per run
    data_dir: Path = Path("var/evaluation")
    resamples: int = 1000  # bootstrap resamples of the confidence intervals


class Stop(Exception):
    """The run must stop now: cancelled by a user, or the service is shutting down (it resumes later)."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancelled" if cancelled else "stopping")
        self.cancelled = cancelled


class Runner:
    def __init__(self, store: SqlStore, registry: TaskRegistry, backends: Backends, sandbox: Sandbox,
                 settings: RunnerSettings, notify: Callable[[str], None], should_stop: Callable[[], Stop | None],
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._registry = registry
        self._backends = backends
        self._sandbox = sandbox
        self._settings = settings
        self._notify = notify
        self._should_stop = should_stop
        self._clock = clock

    def _record(self, run: Run, kind: EventKind, payload: dict[str, Any]) -> Run:
        run, _ = self._store.record(run, kind, payload, self._clock())
        self._notify(run.id)
        return run

    def _transition(self, run: Run, state: RunState, **changes: Any) -> Run:
        previous = run.state
        run = replace(run, state=state, **changes)
        return self._record(run, EventKind.STATE_CHANGE, {"previous": previous.value, "state": state.value})

    def _check(self) -> None:
        stop = self._should_stop()
        if stop is not None:
            raise stop

    async def execute(self, run_id: str) -> Run | None:
        run = self._store.get_run(run_id)
        if run is None or run.state.terminal:
            return run
        now = self._clock()
        resumed = run.state == RunState.RUNNING
        run = self._transition(run, RunState.RUNNING, start_time=run.start_time or now,
                               resume_count=run.resume_count + int(resumed))
        try:
            run = await self._tasks(run)
        except Stop as stop:
            run = self._store.get_run(run_id) or run
            if stop.cancelled:
                run = self._finish(run, RunState.CANCELLED)
            return run
        except GenAIError as exc:
            logger.warning("run %s failed: %s", run_id, exc.message)
            run = self._store.get_run(run_id) or run
            error = ErrorInfo(exc.code.value, exc.reason or exc.code.value, exc.message)
            run = self._record(run, EventKind.ERROR, {"code": error.code, "reason": error.reason,
                                                      "message": error.message})
            return self._finish(run, RunState.FAILED, error=error)
        except Exception:
            logger.exception("run %s failed", run_id)
            run = self._store.get_run(run_id) or run
            error = ErrorInfo("INTERNAL", "INTERNAL", "the evaluation failed with an internal error")
            run = self._record(run, EventKind.ERROR, {"code": error.code, "reason": error.reason,
                                                      "message": error.message})
            return self._finish(run, RunState.FAILED, error=error)
        return self._finish(run, RunState.SUCCEEDED)

    def _finish(self, run: Run, state: RunState, **changes: Any) -> Run:
        results = self._results(run)
        return self._transition(run, state, end_time=self._clock(), results=tuple(results), **changes)

    def _results(self, run: Run) -> list[MetricValue]:
        out = []
        for task_id in run.spec.task_ids:
            try:
                task = self._registry.get(task_id)
            except GenAIError:
                continue
            samples = self._store.samples(run.id, task_id)
            out += metrics.aggregate_all(task_id, task.score_names, samples, resamples=self._settings.resamples,
                                         seed=run.spec.seed)
        return out

    async def _tasks(self, run: Run) -> Run:
        spec = run.spec
        model = self._backends.model(spec.model)
        judge = self._backends.model(spec.judge) if spec.judge else model
        tasks = [self._registry.get(t) for t in spec.task_ids]
        sizes = [min(len(self._registry.docs(t)), spec.limit or 1 << 30) for t in tasks]
        total = sum(sizes)
        done_before = sum(len(self._store.sample_indexes(run.id, t.id)) for t in tasks)
        started, done = time.monotonic(), done_before
        limit = asyncio.Semaphore(self._settings.max_inflight)
        for task, size in zip(tasks, sizes, strict=True):
            docs = self._registry.docs(task)
            fewshot = self._registry.fewshot_docs(task)
            ctx = TaskContext(task, spec, model, judge, None, None, self._sandbox, limit, run.id)
            if task.output_type in (OutputType.RETRIEVAL, OutputType.RAG):
                ctx.retriever = self._backends.retriever()
                ctx.embeddings = self._backends.embeddings()
                ctx.tenant, ctx.collection = await retrieval_eval.prepare(ctx, self._registry.corpus(task))
            stored = self._store.sample_indexes(run.id, task.id)
            todo = [i for i in range(size) if i not in stored]
            evaluator = EVALUATORS[task.output_type]
            # Small units flow through continuously (no batch waits for its slowest example, which matters
            # for generation); finished samples are stored batch_size at a time, each write whole.
            unit = 1 if task.output_type in PER_EXAMPLE else max(1, self._settings.batch_size // 4)
            units = [todo[at: at + unit] for at in range(0, len(todo), unit)]

            def start(indexes: list[int], task=task, docs=docs, fewshot=fewshot, evaluator=evaluator,
                      ctx=ctx) -> asyncio.Future:
                examples = [prompts.build(task, docs, i, few_shot=spec.few_shot, fewshot_docs=fewshot,
                                          prompt_template=spec.prompt_template, seed=spec.seed) for i in indexes]
                return asyncio.ensure_future(evaluator(ctx, examples))

            window = max(2, 2 * self._settings.max_inflight // unit)
            pending: set[asyncio.Future] = set()
            buffer: list[Sample] = []
            while units or pending or buffer:
                while units and len(pending) < window:
                    pending.add(start(units.pop(0)))
                finished, pending = await asyncio.wait(pending, timeout=0.25, return_when=asyncio.FIRST_COMPLETED) \
                    if pending else (set(), pending)
                for future in finished:
                    buffer += future.result()
                stop = self._should_stop()
                if buffer and (len(buffer) >= self._settings.batch_size or not (units or pending) or stop):
                    run, done = self._store_batch(run, task.id, ctx.score_names, buffer, done, done_before, total,
                                                  started)
                    buffer = []
                if stop is not None:
                    for future in pending:
                        future.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise stop
            final = metrics.aggregate_all(task.id, ctx.score_names, self._store.samples(run.id, task.id),
                                          resamples=self._settings.resamples, seed=spec.seed)
            kept = [r for r in run.results if r.task_id != task.id]
            run = replace(self._store.get_run(run.id) or run, results=(*kept, *final))
            run = self._record(run, EventKind.TASK_COMPLETE, {"task_id": task.id,
                                                              "results": [_metric_json(m) for m in final]})
        return run

    def _store_batch(self, run: Run, task_id: str, names, samples: list[Sample], done: int, done_before: int,
                     total: int, started: float) -> tuple[Run, int]:
        """Store finished samples in one write, then record progress and the task's metrics so far."""
        self._store.put_samples(run.id, samples)
        done += len(samples)
        usage = run.usage
        for s in samples:
            usage = usage + s.usage
        rate = (done - done_before) / max(1e-6, time.monotonic() - started)
        progress = Progress(done, total, task_id, rate, (total - done) / rate if rate > 0 else None)
        run = replace(self._store.get_run(run.id) or run, progress=progress, usage=usage)
        run = self._record(run, EventKind.PROGRESS, _progress_json(progress))
        partial = metrics.aggregate_all(task_id, names, self._store.samples(run.id, task_id), resamples=0)
        run = self._record(run, EventKind.PARTIAL_METRICS, {"results": [_metric_json(m) for m in partial]})
        return run, done


def _progress_json(p: Progress) -> dict[str, Any]:
    return {"done": p.done, "total": p.total, "current_task": p.current_task, "per_second": p.per_second,
            "eta_seconds": p.eta_seconds}


def _metric_json(m: MetricValue) -> dict[str, Any]:
    return {"task_id": m.task_id, "metric": m.metric, "filter": m.filter, "value": m.value,
            "sample_count": m.sample_count, "stderr": m.stderr, "ci_lower": m.ci_lower, "ci_upper": m.ci_upper}

