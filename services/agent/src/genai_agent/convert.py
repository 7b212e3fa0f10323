"""genai.agent.v1 messages <-> the agent's domain values, both directions.

Checks here are only what protobuf cannot say: enum values that have no domain meaning, a message
``type`` that is not one of the four, which oneof is set. Every rule about values is the domain's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from genai.agent.v1 import agent_service_pb2 as pb
from genai.type.v1 import error_pb2, usage_pb2
from genai_core.errors import InvalidArgument
from genai_core.structs import struct_to_dict, whole_numbers
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from genai_agent.state import jsonable
from genai_agent.types import (
    DEFAULT_TENANT,
    AgentSpec,
    Assistant,
    CheckpointRef,
    Command,
    CustomEvent,
    ErrorEvent,
    Grader,
    IfExists,
    Interrupt,
    InterruptEvent,
    MessageEvent,
    ModelProvider,
    ModelSpec,
    MultitaskStrategy,
    NodeEnd,
    NodeStart,
    NodeUpdate,
    OnDisconnect,
    Run,
    RunEnd,
    RunError,
    RunEvent,
    RunMetadata,
    RunSpec,
    RunStatus,
    StateValues,
    StreamMode,
    Thread,
    ThreadState,
    ThreadStatus,
    ToolCallEvent,
    ToolInfo,
    ToolResult,
)

RUN_STATUS = {
    RunStatus.PENDING: pb.RUN_STATUS_PENDING, RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
    RunStatus.INTERRUPTED: pb.RUN_STATUS_INTERRUPTED, RunStatus.SUCCESS: pb.RUN_STATUS_SUCCESS,
    RunStatus.ERROR: pb.RUN_STATUS_ERROR, RunStatus.TIMEOUT: pb.RUN_STATUS_TIMEOUT,
    RunStatus.CANCELLED: pb.RUN_STATUS_CANCELLED,
}
RUN_STATUS_IN = {v: k for k, v in RUN_STATUS.items()}
THREAD_STATUS = {ThreadStatus.IDLE: pb.THREAD_STATUS_IDLE, ThreadStatus.BUSY: pb.THREAD_STATUS_BUSY,
                 ThreadStatus.INTERRUPTED: pb.THREAD_STATUS_INTERRUPTED, ThreadStatus.ERROR: pb.THREAD_STATUS_ERROR}
THREAD_STATUS_IN = {v: k for k, v in THREAD_STATUS.items()}
MULTITASK = {pb.MULTITASK_STRATEGY_UNSPECIFIED: MultitaskStrategy.REJECT,
             pb.MULTITASK_STRATEGY_REJECT: MultitaskStrategy.REJECT,
             pb.MULTITASK_STRATEGY_ENQUEUE: MultitaskStrategy.ENQUEUE,
             pb.MULTITASK_STRATEGY_INTERRUPT: MultitaskStrategy.INTERRUPT,
             pb.MULTITASK_STRATEGY_ROLLBACK: MultitaskStrategy.ROLLBACK}
MULTITASK_OUT = {v: k for k, v in MULTITASK.items() if k != pb.MULTITASK_STRATEGY_UNSPECIFIED}
STREAM_MODES = {pb.STREAM_MODE_VALUES: StreamMode.VALUES, pb.STREAM_MODE_UPDATES: StreamMode.UPDATES,
                pb.STREAM_MODE_MESSAGES: StreamMode.MESSAGES, pb.STREAM_MODE_TASKS: StreamMode.TASKS,
                pb.STREAM_MODE_TOOLS: StreamMode.TOOLS, pb.STREAM_MODE_CUSTOM: StreamMode.CUSTOM}
STREAM_MODES_OUT = {v: k for k, v in STREAM_MODES.items()}
PROVIDERS = {pb.MODEL_PROVIDER_UNSPECIFIED: ModelProvider.INFERENCE, pb.MODEL_PROVIDER_INFERENCE: ModelProvider.INFERENCE,
             pb.MODEL_PROVIDER_OPENAI: ModelProvider.OPENAI}
PROVIDERS_OUT = {ModelProvider.INFERENCE: pb.MODEL_PROVIDER_INFERENCE, ModelProvider.OPENAI: pb.MODEL_PROVIDER_OPENAI}
IF_EXISTS = {pb.IF_EXISTS_UNSPECIFIED: IfExists.RAISE, pb.IF_EXISTS_RAISE: IfExists.RAISE,
             pb.IF_EXISTS_DO_NOTHING: IfExists.DO_NOTHING}
ON_DISCONNECT = {pb.ON_DISCONNECT_UNSPECIFIED: OnDisconnect.CANCEL, pb.ON_DISCONNECT_CANCEL: OnDisconnect.CANCEL,
                 pb.ON_DISCONNECT_CONTINUE: OnDisconnect.CONTINUE}
GRADERS = {"": Grader.MODEL, "model": Grader.MODEL, "score": Grader.SCORE}
MESSAGE_TYPES: dict[str, type[BaseMessage]] = {"human": HumanMessage, "user": HumanMessage, "ai": AIMessage,
                                               "assistant": AIMessage, "tool": ToolMessage, "system": SystemMessage}


def _enum(table: dict[Any, Any], value: Any, field_path: str) -> Any:
    try:
        return table[value]
    except KeyError:
        raise InvalidArgument.for_field(field_path, f"unknown value {value}") from None


def tenant(request: Any) -> str:
    return request.tenant or DEFAULT_TENANT


def if_exists(value: int) -> IfExists:
    return _enum(IF_EXISTS, value, "if_exists")


def thread_status_in(value: int) -> ThreadStatus | None:
    return None if value == pb.THREAD_STATUS_UNSPECIFIED else _enum(THREAD_STATUS_IN, value, "status")


def run_status_in(value: int) -> RunStatus | None:
    return None if value == pb.RUN_STATUS_UNSPECIFIED else _enum(RUN_STATUS_IN, value, "status")


def metadata_in(s: struct_pb2.Struct) -> dict[str, Any]:
    return struct_to_dict(s)


# -- JSON values ---------------------------------------------------------------------------------------------


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if value:
        s.update(jsonable(value))
    return s


def value(v: Any) -> struct_pb2.Value:
    return json_format.ParseDict(jsonable(v), struct_pb2.Value())


def from_value(v: struct_pb2.Value) -> Any:
    return whole_numbers(json_format.MessageToDict(v))


def timestamp(t: datetime | None) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    if t is not None:
        out.FromDatetime(t)
    return out


# -- messages ------------------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content or [])


def message(m: BaseMessage) -> pb.Message:
    chunk = isinstance(m, AIMessageChunk)
    out = pb.Message(id=m.id or "", type="ai" if chunk else m.type, content=_text(m.content),
                     name=getattr(m, "name", None) or "", chunk=chunk)
    if isinstance(m, AIMessage):
        for c in m.tool_calls:
            out.tool_calls.append(pb.ToolCall(id=c["id"] or "", name=c["name"], args=struct(c["args"])))
        usage = m.usage_metadata
        if usage:
            out.usage.CopyFrom(usage_pb2.Usage(prompt_tokens=usage.get("input_tokens", 0),
                                               completion_tokens=usage.get("output_tokens", 0),
                                               total_tokens=usage.get("total_tokens", 0)))
    if chunk:
        for c in m.tool_call_chunks:
            out.tool_call_chunks.append(pb.ToolCallChunk(index=c.get("index") or 0, id=c.get("id") or "",
                                                         name=c.get("name") or "", args=c.get("args") or ""))
    if isinstance(m, ToolMessage):
        out.tool_call_id, out.status = m.tool_call_id, m.status
    if m.response_metadata:
        out.response_metadata.CopyFrom(struct(m.response_metadata))
    return out


def message_in(m: pb.Message, field_path: str) -> BaseMessage:
    kind = _enum(MESSAGE_TYPES, m.type, f"{field_path}.type")
    common: dict[str, Any] = {"content": m.content}
    if m.id:
        common["id"] = m.id
    if m.name:
        common["name"] = m.name
    if kind is AIMessage:
        calls = [{"id": c.id, "name": c.name, "args": struct_to_dict(c.args), "type": "tool_call"}
                 for c in m.tool_calls]
        return AIMessage(tool_calls=calls, **common)
    if kind is ToolMessage:
        if not m.tool_call_id:
            raise InvalidArgument.for_field(f"{field_path}.tool_call_id", "a tool message answers a tool call: set its id")
        if m.status not in ("", "success", "error"):
            raise InvalidArgument.for_field(f"{field_path}.status", "use success or error")
        return ToolMessage(tool_call_id=m.tool_call_id, status=m.status or "success", **common)
    return kind(**common)


# -- state -------------------------------------------------------------------------------------------------


def interrupt(i: Interrupt) -> pb.Interrupt:
    out = pb.Interrupt(id=i.id)
    if i.approval is not None:
        out.approval.reason = i.approval.reason
        for c in i.approval.tool_calls:
            out.approval.tool_calls.append(pb.ToolCall(id=c.id, name=c.name, args=struct(c.args)))
    else:
        out.value.CopyFrom(value(i.value))
    return out


def state_values(v: StateValues) -> pb.StateValues:
    return pb.StateValues(messages=[message(m) for m in v.messages], values=struct(v.values),
                          interrupts=[interrupt(i) for i in v.interrupts])


def state_values_in(v: pb.StateValues, field_path: str) -> StateValues:
    messages = tuple(message_in(m, f"{field_path}.messages[{i}]") for i, m in enumerate(v.messages))
    return StateValues(messages, struct_to_dict(v.values))


def checkpoint_ref(r: CheckpointRef | None) -> pb.CheckpointRef | None:
    return None if r is None else pb.CheckpointRef(thread_id=r.thread_id, checkpoint_ns=r.checkpoint_ns,
                                                   checkpoint_id=r.checkpoint_id)


def thread_state(s: ThreadState) -> pb.ThreadState:
    out = pb.ThreadState(values=state_values(s.values), next=list(s.next), metadata=struct(s.metadata),
                         tasks=[pb.StateTask(id=t.id, name=t.name, error=t.error,
                                             interrupts=[interrupt(i) for i in t.interrupts]) for t in s.tasks])
    if s.checkpoint is not None:
        out.checkpoint.CopyFrom(checkpoint_ref(s.checkpoint))
    if s.parent_checkpoint is not None:
        out.parent_checkpoint.CopyFrom(checkpoint_ref(s.parent_checkpoint))
    if s.created_at is not None:
        out.create_time.CopyFrom(timestamp(s.created_at))
    return out


# -- assistants, tools, threads ----------------------------------------------------------------------------


def spec(s: AgentSpec) -> pb.AgentSpec:
    model = pb.ModelSpec(provider=PROVIDERS_OUT[s.model.provider], name=s.model.name, base_url=s.model.base_url)
    if s.model.temperature is not None:
        model.temperature = s.model.temperature
    if s.model.max_tokens is not None:
        model.max_tokens = s.model.max_tokens
    return pb.AgentSpec(model=model, system_prompt=s.system_prompt, tools=list(s.tools),
                        approval_tools=list(s.approval_tools), max_steps=s.max_steps,
                        first_tool_choice=s.first_tool_choice, collection=s.collection, top_k=s.top_k,
                        max_plan_steps=s.max_plan_steps, grader=s.grader.value, min_score=s.min_score,
                        max_tool_rounds=s.max_tool_rounds)


def spec_in(s: pb.AgentSpec, field_path: str = "spec") -> AgentSpec:
    m = s.model
    model = ModelSpec(_enum(PROVIDERS, m.provider, f"{field_path}.model.provider"), m.name, m.base_url,
                      m.temperature if m.HasField("temperature") else None,
                      m.max_tokens if m.HasField("max_tokens") else None)
    return AgentSpec(model=model, system_prompt=s.system_prompt, tools=tuple(s.tools),
                     approval_tools=tuple(s.approval_tools), max_steps=s.max_steps,
                     first_tool_choice=s.first_tool_choice or "auto", collection=s.collection, top_k=s.top_k,
                     max_plan_steps=s.max_plan_steps, grader=_enum(GRADERS, s.grader, f"{field_path}.grader"),
                     min_score=s.min_score, max_tool_rounds=s.max_tool_rounds)


def assistant(a: Assistant) -> pb.Assistant:
    return pb.Assistant(assistant_id=a.assistant_id, graph_id=a.graph_id, name=a.name, description=a.description,
                        spec=spec(a.spec), metadata=struct(a.metadata), version=a.version, builtin=a.builtin,
                        create_time=timestamp(a.created_at), update_time=timestamp(a.updated_at))


def tool(t: ToolInfo) -> pb.Tool:
    return pb.Tool(name=t.name, description=t.description, parameters=struct(t.parameters),
                   requires_approval=t.requires_approval, provider=t.provider)


def thread(t: Thread, values: StateValues | None = None) -> pb.Thread:
    out = pb.Thread(thread_id=t.thread_id, metadata=struct(t.metadata), status=THREAD_STATUS[t.status],
                    create_time=timestamp(t.created_at), update_time=timestamp(t.updated_at))
    if values is not None:
        out.values.CopyFrom(state_values(values))
    return out


# -- runs --------------------------------------------------------------------------------------------------


def _error(e: RunError) -> error_pb2.ErrorDetail:
    return error_pb2.ErrorDetail(code=e.code, reason=e.reason, message=e.message)


def _duration(out: Any, seconds: float) -> None:
    out.FromNanoseconds(int(seconds * 1e9))


def run(r: Run) -> pb.Run:
    out = pb.Run(run_id=r.run_id, thread_id=r.thread_id, assistant_id=r.assistant_id, status=RUN_STATUS[r.status],
                 metadata=struct(r.spec.metadata), multitask_strategy=MULTITASK_OUT[r.spec.multitask_strategy],
                 usage=usage_pb2.Usage(prompt_tokens=r.usage.prompt_tokens,
                                       completion_tokens=r.usage.completion_tokens,
                                       total_tokens=r.usage.prompt_tokens + r.usage.completion_tokens),
                 steps=r.steps, attempt=r.attempt, last_sequence=r.last_sequence, max_steps=r.max_steps,
                 create_time=timestamp(r.created_at), update_time=timestamp(r.updated_at),
                 interrupts=[interrupt(i) for i in r.interrupts],
                 stream_modes=sorted(STREAM_MODES_OUT[m] for m in r.spec.stream_modes))
    if r.error is not None:
        out.error.CopyFrom(_error(r.error))
    for target, seconds in ((out.timings.total_duration, r.timings.total_s),
                            (out.timings.model_duration, r.timings.model_s),
                            (out.timings.tool_duration, r.timings.tool_s),
                            (out.timings.queue_duration, r.timings.queue_s)):
        _duration(target, seconds)
    return out


def stream_modes(modes: Any, field_path: str) -> frozenset[StreamMode]:
    return frozenset(_enum(STREAM_MODES, m, f"{field_path}[{i}]") for i, m in enumerate(modes))


def _command(c: pb.RunCommand) -> Command:
    kind = c.WhichOneof("resume_kind")
    resume: Any = None
    if kind == "resume":
        resume = from_value(c.resume)
    elif kind == "decisions":
        decisions = []
        for i, d in enumerate(c.decisions.decisions):
            which = d.WhichOneof("decision")
            if which == "approve":
                decisions.append({"type": "approve"})
            elif which == "deny":
                decisions.append({"type": "deny", "message": d.deny.message})
            elif which == "edit":
                decisions.append({"type": "edit", "args": struct_to_dict(d.edit.args)})
            else:
                raise InvalidArgument.for_field(f"run.command.decisions.decisions[{i}]",
                                                "set approve, deny or edit")
        resume = {"decisions": decisions}
    update = state_values_in(c.update, "run.command.update") if c.HasField("update") else None
    return Command(resume, kind is not None, update, tuple(c.goto))


def run_spec(r: pb.RunSpec) -> RunSpec:
    return RunSpec(
        assistant_id=r.assistant_id, thread_id=r.thread_id,
        input=state_values_in(r.input, "run.input") if r.HasField("input") else None,
        command=_command(r.command) if r.HasField("command") else None,
        metadata=struct_to_dict(r.metadata), max_steps=r.max_steps, configurable=struct_to_dict(r.configurable),
        multitask_strategy=_enum(MULTITASK, r.multitask_strategy, "run.multitask_strategy"),
        create_thread=r.create_thread, keep_thread=r.keep_thread, checkpoint_id=r.checkpoint_id,
        interrupt_before=tuple(r.interrupt_before), interrupt_after=tuple(r.interrupt_after),
        on_disconnect=_enum(ON_DISCONNECT, r.on_disconnect, "run.on_disconnect"),
        stream_modes=stream_modes(r.stream_modes, "run.stream_modes"),
    )


def _tool_call(c: Any) -> pb.ToolCall:
    return pb.ToolCall(id=c.id, name=c.name, args=struct(c.args))


def event(e: RunEvent) -> pb.RunEvent:
    out = pb.RunEvent(sequence=e.sequence, create_time=timestamp(e.created_at))
    p = e.payload
    if isinstance(p, RunMetadata):
        out.metadata.CopyFrom(pb.RunMetadata(run_id=p.run_id, thread_id=p.thread_id, assistant_id=p.assistant_id,
                                             graph_id=p.graph_id, attempt=p.attempt))
    elif isinstance(p, NodeStart):
        out.node_start.CopyFrom(pb.NodeStart(task_id=p.task_id, node=p.node, step=p.step))
    elif isinstance(p, NodeEnd):
        out.node_end.CopyFrom(pb.NodeEnd(task_id=p.task_id, node=p.node, step=p.step, error=p.error,
                                         interrupted=p.interrupted))
    elif isinstance(p, MessageEvent):
        out.message.CopyFrom(pb.MessageEvent(message=message(p.message), node=p.node, step=p.step))
    elif isinstance(p, StateValues):
        out.values.CopyFrom(state_values(p))
    elif isinstance(p, NodeUpdate):
        out.update.CopyFrom(pb.NodeUpdate(node=p.node, values=state_values(p.values)))
    elif isinstance(p, ToolCallEvent):
        out.tool_call.CopyFrom(pb.ToolCallEvent(tool_call=_tool_call(p.tool_call), node=p.node))
    elif isinstance(p, ToolResult):
        result = pb.ToolResult(tool_call_id=p.tool_call_id, name=p.name, content=p.content, is_error=p.is_error)
        _duration(result.duration, p.duration_s)
        out.tool_result.CopyFrom(result)
    elif isinstance(p, InterruptEvent):
        out.interrupt.CopyFrom(pb.InterruptEvent(interrupts=[interrupt(i) for i in p.interrupts]))
    elif isinstance(p, CustomEvent):
        out.custom.CopyFrom(value(p.value))
    elif isinstance(p, ErrorEvent):
        out.error.CopyFrom(_error(p.error))
    elif isinstance(p, RunEnd):
        out.end.CopyFrom(pb.RunEnd(status=RUN_STATUS[p.status]))
    return out
