"""What evaluating one task of one run needs: the task, the run's spec, the models and services, limits.

Evaluators (``scoring``, ``generation``, ``retrieval_eval``, ``rag``) take a ``TaskContext`` and a batch of
examples and return one ``Sample`` per example; ``traced`` gives each example a span so the trace id of its
model calls is recorded with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from genai_core import spans
from genai_core.telemetry import current_trace_id

from genai_evaluation.ports import Embeddings, LanguageModel, Retriever
from genai_evaluation.prompts import Example
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.taskspec import TaskSpec
from genai_evaluation.types import RunSpec, Sample

T = TypeVar("T")


@dataclass
class TaskContext:
    task: TaskSpec
    spec: RunSpec
    model: LanguageModel
    judge: LanguageModel
    retriever: Retriever | None
    embeddings: Embeddings | None
    sandbox: Sandbox
    limit: asyncio.Semaphore  # model calls in flight for this run
    run_id: str = ""
    collection: str = ""
    tenant: str = ""

    @property
    def score_names(self) -> tuple[str, ...]:
        return self.task.score_names

    async def limited(self, call: Coroutine[Any, Any, T]) -> T:
        """``call`` once one of the run's in-flight slots is free."""
        try:
            async with self.limit:
                return await call
        except BaseException:
            call.close()  # cancelled while waiting for a slot: the call never started
            raise


@contextmanager
def traced(ctx: TaskContext, example: Example) -> Iterator[str]:
    """An EVALUATE span around one example's model calls (``evaluation.evaluate <task>``); yields its trace id
    (32 hex digits), which the sample records so its calls can be found in the trace backend."""
    with spans.start(spans.Operation.EVALUATE, ctx.task.id) as span:
        span.attributes(**{"evaluation.run_id": ctx.run_id, "evaluation.task_id": ctx.task.id,
                            "evaluation.example_index": example.index})
        yield current_trace_id()


Evaluator = Callable[[TaskContext, Sequence[Example]], Awaitable[list[Sample]]]


def doc_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as stored with its sample (JSON values only)."""
    return {k: v if isinstance(v, str | int | float | bool | list | dict) or v is None else str(v)
            for k, v in doc.items()}
