"""Run one run: its graph streamed with every LangGraph stream mode, each part recorded as a typed event.

The graph is compiled with the checkpointer, so every step is checkpointed under the thread; the run's
outcome is read back from the last checkpoint (pending nodes mean it stopped at an interrupt). Failures
become a typed ``RunError``: the step limit (LangGraph's recursion limit), a domain error with its code,
anything else INTERNAL without its text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from genai_core.errors import GenAIError
from langchain_core.messages import BaseMessage
from langgraph.errors import GraphRecursionError
from langgraph.types import Command as GraphCommand
from opentelemetry import trace

from genai_agent.chatmodels import ModelFactory
from genai_agent.graphs import CompiledGraphs
from genai_agent.graphs.nodes import Meter, RunContext
from genai_agent.ports import Retrieval
from genai_agent.state import checkpoint_thread, interrupts, to_input, to_values
from genai_agent.toolkit import Toolbox
from genai_agent.types import (
    AgentSpec,
    Assistant,
    CustomEvent,
    EventPayload,
    Interrupt,
    InterruptEvent,
    MessageEvent,
    NodeEnd,
    NodeStart,
    NodeUpdate,
    Run,
    RunError,
    RunStatus,
    RunTimings,
    StateValues,
    ToolCallEvent,
    ToolResult,
    Usage,
)

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("genai_agent")

MODES = ["values", "updates", "messages", "tasks", "custom"]


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    error: RunError | None
    interrupts: tuple[Interrupt, ...]
    steps: int
    usage: Usage
    timings: RunTimings
    final: StateValues | None


class _Translator:
    """LangGraph stream parts (``version="v2"``) as run events; counts the steps on the way."""

    def __init__(self) -> None:
        self.steps = 0
        self._values_seen = 0

    def events(self, part: dict[str, Any]) -> Iterator[EventPayload]:
        kind, data = part["type"], part["data"]
        if kind == "values":
            self._values_seen += 1
            self.steps = max(self.steps, self._values_seen - 1)  # the first values are the input
            yield to_values(data, part.get("interrupts") or ())
        elif kind == "updates":
            for node, update in data.items():
                if node == "__interrupt__":
                    yield InterruptEvent(interrupts(update))
                elif not node.startswith("__"):
                    yield NodeUpdate(node, to_values(update if isinstance(update, dict) else {}))
        elif kind == "messages":
            message, metadata = data
            if isinstance(message, BaseMessage):
                yield MessageEvent(message, str(metadata.get("langgraph_node", "")),
                                   int(metadata.get("langgraph_step", 0)))
        elif kind == "tasks":
            step = self._values_seen
            if "input" in data:
                yield NodeStart(str(data["id"]), str(data["name"]), step)
            else:
                yield NodeEnd(str(data["id"]), str(data["name"]), step, str(data.get("error") or ""),
                              bool(data.get("interrupts")))
        elif kind == "custom":
            yield data if isinstance(data, ToolCallEvent | ToolResult) else CustomEvent(data)


def graph_input(run: Run) -> Any:
    command = run.spec.command
    if command is not None:
        update = to_input(command.update) if command.update is not None else None
        kwargs: dict[str, Any] = {"update": update, "goto": list(command.goto)}
        if command.has_resume:
            kwargs["resume"] = command.resume
        return GraphCommand(**kwargs)
    return to_input(run.spec.input) if run.spec.input is not None else None


def _nodes(names: tuple[str, ...]) -> Any:
    """LangGraph's interrupt_before/after: node names, or "*" for every node."""
    return "*" if "*" in names else list(names) or None


def run_error(exc: BaseException, max_steps: int) -> RunError:
    if isinstance(exc, GraphRecursionError):
        return RunError("RESOURCE_EXHAUSTED", "STEP_LIMIT_REACHED",
                        f"the run reached its step limit of {max_steps} graph steps without finishing; "
                        "raise max_steps on the run or the assistant (LangGraph's recursion_limit)")
    if isinstance(exc, GenAIError):
        return RunError(exc.code.value, exc.reason or exc.code.value, exc.message)
    return RunError("INTERNAL", "INTERNAL", "the run failed with an internal error; see the agent service's log")


class Executor:
    """Executes runs on the compiled graphs."""

    def __init__(self, graphs: CompiledGraphs, models: ModelFactory, toolbox: Toolbox, retrieval: Retrieval,
                 *, tool_timeout: float, run_timeout: float) -> None:
        self._graphs = graphs
        self._models = models
        self._toolbox = toolbox
        self._retrieval = retrieval
        self._tool_timeout = tool_timeout
        self._run_timeout = run_timeout

    def config(self, run: Run) -> dict[str, Any]:
        configurable: dict[str, Any] = {"thread_id": checkpoint_thread(run.tenant, run.thread_id)}
        if run.spec.checkpoint_id:
            configurable["checkpoint_id"] = run.spec.checkpoint_id
        return {"configurable": configurable, "recursion_limit": run.max_steps,
                "metadata": {"run_id": run.run_id, "assistant_id": run.assistant_id, "graph_id": run.graph_id,
                             "thread_id": run.thread_id}}

    async def execute(self, run: Run, assistant: Assistant, spec: AgentSpec, emit: Any) -> Outcome:
        """Run ``run`` to its end or interrupt, passing each event to ``emit``; never raises except when
        cancelled (the caller records the cancellation)."""
        graph = self._graphs.get(run.graph_id)
        meter = Meter()
        context = RunContext(
            tenant=run.tenant, run_id=run.run_id, thread_id=run.thread_id, assistant_name=assistant.name, spec=spec,
            model=self._models.build(spec.model), tools=self._toolbox.select(spec), retrieval=self._retrieval,
            tool_timeout=self._tool_timeout, meter=meter,
        )
        config = self.config(run)
        translator = _Translator()
        status, error = RunStatus.SUCCESS, None
        started = time.perf_counter()
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": assistant.assistant_id,
                      "gen_ai.agent.name": assistant.name, "gen_ai.conversation.id": run.thread_id}
        with tracer.start_as_current_span(f"invoke_agent {assistant.name}", attributes=attributes) as span:
            try:
                async with asyncio.timeout(self._run_timeout):
                    async for part in graph.astream(
                        graph_input(run), config, context=context, stream_mode=MODES, version="v2",
                        interrupt_before=_nodes(run.spec.interrupt_before),
                        interrupt_after=_nodes(run.spec.interrupt_after),
                    ):
                        for event in translator.events(part):
                            emit(event)
            except TimeoutError:
                status = RunStatus.TIMEOUT
                error = RunError("DEADLINE_EXCEEDED", "RUN_TIMEOUT",
                                 f"the run took longer than the service's run timeout of {self._run_timeout:g} s")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure ends the run with a typed error
                if not isinstance(exc, GenAIError | GraphRecursionError):
                    logger.exception("run %s failed", run.run_id)
                status, error = RunStatus.ERROR, run_error(exc, run.max_steps)
            span.set_attribute("genai.run.status", status.value)
            if error is not None:
                span.set_attribute("error.type", error.reason)
        total = time.perf_counter() - started
        final, pending = None, ()
        try:
            snapshot = await graph.aget_state({"configurable": {"thread_id": config["configurable"]["thread_id"]}})
            final = to_values(snapshot.values, snapshot.interrupts)
            pending = final.interrupts
            if status is RunStatus.SUCCESS and snapshot.next:
                status = RunStatus.INTERRUPTED
        except Exception:  # noqa: BLE001 - the outcome stands without the final state
            logger.exception("reading the final state of run %s failed", run.run_id)
        return Outcome(status, error, pending if status is RunStatus.INTERRUPTED else (), translator.steps,
                       meter.usage, RunTimings(total, meter.model_s, meter.tool_s, 0.0), final)
