"""What the graphs share: the run's context, model calls and the tools node with human approval.

Every model call and every tool call is a span with the OpenTelemetry GenAI attributes, and adds its
time to the run's ``Meter``, which is how a run reports model time, tool time and the service's own
overhead. Tool calls and results also go to the run's event stream through LangGraph's stream writer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genai_core.errors import GenAIError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langgraph.graph import MessagesState
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from genai_agent.approval import approval_value, parse_decisions
from genai_agent.chatmodels import BackendChatModel, openai_tool, structured
from genai_agent.ports import Retrieval
from genai_agent.toolkit import Tool, ToolContext
from genai_agent.types import AgentSpec, ToolCall, ToolCallEvent, ToolResult, Usage

tracer = trace.get_tracer("genai_agent")

NOSTREAM = "nostream"  # LangGraph's tag for model calls whose tokens must not stream


@dataclass
class Meter:
    """Where a run's time and tokens went; nodes add to it, the run reports it."""

    model_s: float = 0.0
    tool_s: float = 0.0
    usage: Usage = Usage()
    model_calls: int = 0


@dataclass
class RunContext:
    """LangGraph's run-scoped context (``Runtime.context``): everything a node needs besides the state."""

    tenant: str
    run_id: str
    thread_id: str
    assistant_name: str
    spec: AgentSpec
    model: BaseChatModel
    tools: Mapping[str, Tool]
    retrieval: Retrieval
    tool_timeout: float = 60.0
    meter: Meter = field(default_factory=Meter)


State = MessagesState


def with_system(prompt: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    return [SystemMessage(prompt), *messages] if prompt else list(messages)


def _provider(model: BaseChatModel) -> str:
    return "genai.inference" if isinstance(model, BackendChatModel) else "openai"


async def call_model(
    ctx: RunContext,
    messages: Sequence[BaseMessage],
    *,
    tools: Sequence[Tool] = (),
    tool_choice: str = "auto",
    schema: dict[str, Any] | None = None,
    stream: bool = True,
    model: BaseChatModel | None = None,
) -> AIMessage:
    """One model call: tools bound with ``tool_choice``, or JSON constrained to ``schema``; ``stream=False``
    keeps its tokens out of the messages stream (graders, planners, rewriters)."""
    model = model or ctx.model
    runnable: Any = model
    if tools:
        runnable = model.bind_tools([openai_tool(t.schema) for t in tools], tool_choice=tool_choice)
    elif schema is not None:
        runnable = structured(model, schema)
    name = getattr(model, "model", "") or getattr(model, "model_name", "")
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": _provider(model),
                  "gen_ai.request.model": name, "gen_ai.conversation.id": ctx.thread_id}
    started = time.perf_counter()
    with tracer.start_as_current_span(f"chat {name}", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        try:
            reply = await runnable.ainvoke(list(messages), {"tags": [] if stream else [NOSTREAM]})
        finally:
            ctx.meter.model_s += time.perf_counter() - started
            ctx.meter.model_calls += 1
        usage = getattr(reply, "usage_metadata", None) or {}
        ctx.meter.usage += Usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))
        span.set_attribute("gen_ai.usage.input_tokens", usage.get("input_tokens", 0))
        span.set_attribute("gen_ai.usage.output_tokens", usage.get("output_tokens", 0))
        finish = (reply.response_metadata or {}).get("finish_reason")
        if finish:
            span.set_attribute("gen_ai.response.finish_reasons", [finish])
    return reply


def parse_json(reply: AIMessage) -> dict[str, Any]:
    """The JSON object a constrained call replied with; an unparsable reply is an empty object."""
    try:
        value = json.loads(reply.content if isinstance(reply.content, str) else "")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# -- tools --------------------------------------------------------------------------------------------------


def last_ai(messages: Sequence[BaseMessage]) -> tuple[AIMessage | None, set[str]]:
    """The last AI message and the ids of its tool calls that already have an answer after it."""
    answered: set[str] = set()
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            answered.add(message.tool_call_id)
        elif isinstance(message, AIMessage):
            return message, answered
    return None, answered


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, GenAIError):
        return exc.message
    if isinstance(exc, (ValueError, LookupError, RuntimeError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


Runner = Callable[[], Awaitable[str]]


async def run_tool_call(ctx: RunContext, runtime: Runtime[RunContext], call: ToolCall, runner: Runner,
                        description: str = "", node: str = "tools") -> ToolMessage:
    """Run one tool call as a span, with its call and result in the event stream; an exception (or the
    tool timeout) becomes an error result for the model instead of failing the run."""
    runtime.stream_writer(ToolCallEvent(call, node))
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                  "gen_ai.tool.call.id": call.id, "gen_ai.tool.type": "function"}
    if description:
        attributes["gen_ai.tool.description"] = description[:200]
    started = time.perf_counter()
    with tracer.start_as_current_span(f"execute_tool {call.name}", attributes=attributes) as span:
        try:
            content = await asyncio.wait_for(runner(), ctx.tool_timeout)
            is_error = False
        except TimeoutError:
            content, is_error = f"Error: {call.name} did not finish within {ctx.tool_timeout:g} s", True
        except Exception as exc:  # noqa: BLE001 - a failing tool is the model's problem to handle, not the run's
            content, is_error = f"Error: {_error_text(exc)}", True
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
    duration = time.perf_counter() - started
    runtime.stream_writer(ToolResult(call.id, call.name, content, is_error, duration))
    return ToolMessage(content=content, tool_call_id=call.id, name=call.name, status="error" if is_error else "success")


def _registered(ctx: RunContext, call: ToolCall) -> tuple[Runner, str]:
    tool = ctx.tools.get(call.name)

    async def run() -> str:
        if tool is None:
            raise LookupError(f"there is no tool {call.name!r}; call one of: {', '.join(ctx.tools) or 'none'}")
        return await tool.run(call.args, ToolContext(ctx.tenant, ctx.spec, ctx.run_id))

    return run, tool.description if tool else ""


async def tools_node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run the last AI message's unanswered tool calls, after a human approved those that need it.

    The approval is LangGraph's ``interrupt()``: the run stops, and a resume answers with decisions. An
    approved call runs as it is, an edited one with the new arguments (the AI message is rewritten so the
    history shows what ran), a denied one gets the denial as its error result. A tool that raises also
    gives its error as the result: the model sees it and can react, the run goes on.
    """
    ctx = runtime.context
    ai, answered = last_ai(state["messages"])
    if ai is None:
        return {}
    calls = [ToolCall(c["id"] or f"call_{i}", c["name"], dict(c["args"]))
             for i, c in enumerate(ai.tool_calls) if c["id"] not in answered]
    pending = [c for c in calls if c.name in ctx.tools and ctx.tools[c.name].requires_approval]
    out: list[BaseMessage] = []
    if pending:
        decisions = parse_decisions(interrupt(approval_value(pending)), pending)
        edited = {i: d.args for i, d in decisions.items() if d.kind == "edit"}
        if edited:
            rewritten = [{**c, "args": edited.get(c["id"], c["args"])} for c in ai.tool_calls]
            out.append(ai.model_copy(update={"tool_calls": rewritten}))
        denied = {i: d for i, d in decisions.items() if d.kind == "deny"}
        out.extend(ToolMessage(content=f"Denied by a human reviewer{': ' + d.message if d.message else '.'}",
                               tool_call_id=i, name=next(c.name for c in calls if c.id == i), status="error")
                   for i, d in denied.items())
        calls = [ToolCall(c.id, c.name, edited.get(c.id, c.args)) for c in calls if c.id not in denied]
    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(run_tool_call(ctx, runtime, c, *_registered(ctx, c)) for c in calls))
    finally:
        ctx.meter.tool_s += time.perf_counter() - started  # wall time: parallel calls overlap
    return {"messages": [*out, *results]}
