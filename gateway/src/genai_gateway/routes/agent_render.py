"""genai.agent.v1 messages rendered as LangGraph Agent Server JSON (what ``langgraph-sdk`` parses), and a
run's typed events rendered as that server's SSE events, per stream mode.

Messages take LangChain's ``model_dump()`` shape (``type`` human / ai / tool / system, ``AIMessageChunk``
for streamed parts); state values are ``{"messages": [...], <graph keys>}`` plus ``__interrupt__`` in
streamed values when the run stopped at an interrupt. Free-form JSON objects of requests (metadata, state
values, tool arguments) become ``Struct``s through ``struct``, which answers 400 for what a Struct cannot hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import grpc
from genai.agent.v1 import agent_service_pb2 as pb
from genai_core.structs import struct_to_dict, whole_numbers
from google.protobuf import json_format, struct_pb2

from genai_gateway.errors import GatewayError, invalid_argument
from genai_gateway.routes.langgraph_protocol import StreamModeName

RUN_STATUS = {pb.RUN_STATUS_PENDING: "pending", pb.RUN_STATUS_RUNNING: "running",
              pb.RUN_STATUS_INTERRUPTED: "interrupted", pb.RUN_STATUS_SUCCESS: "success",
              pb.RUN_STATUS_ERROR: "error", pb.RUN_STATUS_TIMEOUT: "timeout",
              # LangGraph reports a cancelled run as interrupted (with a cancel_reason)
              pb.RUN_STATUS_CANCELLED: "interrupted"}
THREAD_STATUS = {pb.THREAD_STATUS_IDLE: "idle", pb.THREAD_STATUS_BUSY: "busy",
                 pb.THREAD_STATUS_INTERRUPTED: "interrupted", pb.THREAD_STATUS_ERROR: "error"}
MULTITASK = {pb.MULTITASK_STRATEGY_REJECT: "reject", pb.MULTITASK_STRATEGY_ENQUEUE: "enqueue",
             pb.MULTITASK_STRATEGY_INTERRUPT: "interrupt", pb.MULTITASK_STRATEGY_ROLLBACK: "rollback"}
PROVIDERS = {pb.MODEL_PROVIDER_INFERENCE: "inference", pb.MODEL_PROVIDER_OPENAI: "openai",
             pb.MODEL_PROVIDER_UNSPECIFIED: "inference"}


def time(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return datetime.now(UTC).isoformat()
    return ts.ToDatetime(tzinfo=UTC).isoformat()


def jsonify(message: Any) -> dict[str, Any]:
    return whole_numbers(json_format.MessageToDict(message, preserving_proto_field_name=True))


def struct(value: Any, param: str) -> struct_pb2.Struct:
    """A JSON object as a Struct; anything a Struct cannot hold (a number beyond a double) is a 400."""
    s = struct_pb2.Struct()
    if value is None:
        return s
    if not isinstance(value, dict):
        raise invalid_argument(param, "a JSON object")
    try:
        s.update(value)
    except (OverflowError, ValueError, TypeError) as exc:
        raise invalid_argument(param, f"holds a value protobuf cannot carry ({exc})") from None
    return s


def ended_early() -> GatewayError:
    """A run stream that ended before its first event: the agent service stopped (a restart drains its
    streams), not a request the client got wrong; the run, if it was created, can be found and joined."""
    return GatewayError(503, "the agent service ended the run's stream before it started (it may be restarting); "
                             "retry shortly, or list the thread's runs to join one that was created",
                        "service_unavailable_error", "unavailable")


# -- messages and state ---------------------------------------------------------------------------------------


def message(m: pb.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"content": m.content, "additional_kwargs": {},
                           "response_metadata": struct_to_dict(m.response_metadata),
                           "type": "AIMessageChunk" if m.chunk else m.type, "name": m.name or None, "id": m.id or None}
    if m.type == "ai":
        out["tool_calls"] = [{"name": c.name, "args": struct_to_dict(c.args), "id": c.id or None, "type": "tool_call"}
                             for c in m.tool_calls]
        out["invalid_tool_calls"] = []
        out["usage_metadata"] = ({"input_tokens": m.usage.prompt_tokens, "output_tokens": m.usage.completion_tokens,
                                  "total_tokens": m.usage.total_tokens} if m.HasField("usage") else None)
    if m.chunk:
        out["tool_call_chunks"] = [{"name": c.name or None, "args": c.args, "id": c.id or None, "index": c.index,
                                    "type": "tool_call_chunk"} for c in m.tool_call_chunks]
    if m.type == "tool":
        out.update(tool_call_id=m.tool_call_id, artifact=None, status=m.status or "success")
    return out


def interrupt(i: pb.Interrupt) -> dict[str, Any]:
    if i.WhichOneof("kind") == "approval":
        a = i.approval
        value: Any = {"type": "tool_approval", "reason": a.reason,
                      "tool_calls": [{"id": c.id, "name": c.name, "args": struct_to_dict(c.args)} for c in a.tool_calls],
                      "allowed_decisions": ["approve", "deny", "edit"]}
    else:
        value = whole_numbers(json_format.MessageToDict(i.value)) if i.HasField("value") else None
    return {"value": value, "id": i.id}


def values(v: pb.StateValues, with_interrupts: bool = False) -> dict[str, Any]:
    out = struct_to_dict(v.values)
    if v.messages or "messages" not in out:
        out["messages"] = [message(m) for m in v.messages]
    if with_interrupts and v.interrupts:
        out["__interrupt__"] = [interrupt(i) for i in v.interrupts]
    return out


def checkpoint(ref: pb.CheckpointRef) -> dict[str, Any]:
    return {"thread_id": ref.thread_id, "checkpoint_ns": ref.checkpoint_ns, "checkpoint_id": ref.checkpoint_id,
            "checkpoint_map": None}


def thread_state(s: pb.ThreadState, thread_id: str) -> dict[str, Any]:
    ref = checkpoint(s.checkpoint) if s.HasField("checkpoint") else {
        "thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None, "checkpoint_map": None}
    return {
        "values": values(s.values), "next": list(s.next), "checkpoint": ref,
        "metadata": struct_to_dict(s.metadata), "created_at": time(s.create_time) if s.HasField("create_time") else None,
        "parent_checkpoint": checkpoint(s.parent_checkpoint) if s.HasField("parent_checkpoint") else None,
        "tasks": [{"id": t.id, "name": t.name, "error": t.error or None, "interrupts": [interrupt(i) for i in t.interrupts],
                   "checkpoint": None, "state": None, "result": None} for t in s.tasks],
        "interrupts": [interrupt(i) for i in s.values.interrupts],
    }


# -- resources ------------------------------------------------------------------------------------------------


def spec(s: pb.AgentSpec) -> dict[str, Any]:
    out = jsonify(s)
    model = out.setdefault("model", {})
    model["provider"] = PROVIDERS[s.model.provider]
    return out


def assistant(a: pb.Assistant) -> dict[str, Any]:
    config: dict[str, Any] = {"configurable": {}}
    if a.spec.max_steps:
        config["recursion_limit"] = a.spec.max_steps
    return {"assistant_id": a.assistant_id, "graph_id": a.graph_id, "config": config, "context": spec(a.spec),
            "created_at": time(a.create_time), "updated_at": time(a.update_time),
            "metadata": struct_to_dict(a.metadata), "version": a.version, "name": a.name,
            "description": a.description or None}


def thread(t: pb.Thread, interrupts: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    return {"thread_id": t.thread_id, "created_at": time(t.create_time), "updated_at": time(t.update_time),
            "metadata": struct_to_dict(t.metadata), "status": THREAD_STATUS.get(t.status, "idle"),
            "values": values(t.values) if t.HasField("values") else None, "interrupts": interrupts or {}}


def run(r: pb.Run) -> dict[str, Any]:
    out = {"run_id": r.run_id, "thread_id": r.thread_id, "assistant_id": r.assistant_id,
           "created_at": time(r.create_time), "updated_at": time(r.update_time),
           "status": RUN_STATUS.get(r.status, "pending"), "metadata": struct_to_dict(r.metadata),
           "multitask_strategy": MULTITASK.get(r.multitask_strategy, "reject"),
           "kwargs": {"max_steps": r.max_steps}}
    if r.status == pb.RUN_STATUS_CANCELLED:
        out["cancel_reason"] = r.error.message or "cancelled"
    if r.HasField("error") and r.status != pb.RUN_STATUS_CANCELLED:
        out["error"] = {"error": r.error.reason or r.error.code, "message": r.error.message}
    return out


def result(status: int, error: Any, v: pb.StateValues | None) -> dict[str, Any]:
    """What ``runs.wait`` and ``runs.join`` return: the final values, or ``__error__`` for a failed run."""
    if status in (pb.RUN_STATUS_ERROR, pb.RUN_STATUS_TIMEOUT) and error is not None:
        return {"__error__": {"error": error.reason or error.code, "message": error.message}}
    return values(v, with_interrupts=True) if v is not None else {}


async def outcome(stream: Any, read: Any) -> tuple[pb.StateValues | None, int, Any]:
    """Read a run's event stream to its end: the last values, the end status and the error, if any.
    ``read`` awaits one message (``errors.call`` around ``stream.read()``); the stream is cancelled after."""
    values, status, error = None, pb.RUN_STATUS_UNSPECIFIED, None
    try:
        while (reply := await read(stream.read())) is not grpc.aio.EOF:
            kind = reply.event.WhichOneof("payload")
            if kind == "values":
                values = reply.event.values
            elif kind == "error":
                error = reply.event.error
            elif kind == "end":
                status = reply.event.end.status
    finally:
        stream.cancel()
    return values, status, error


# -- SSE ------------------------------------------------------------------------------------------------------

SUPPORTED_MODES = get_args(StreamModeName)
# What each LangGraph stream mode needs from the agent service (``messages`` needs node updates to know
# when a streamed message is complete).
MODE_EVENTS = {
    "values": [pb.STREAM_MODE_VALUES], "updates": [pb.STREAM_MODE_UPDATES],
    "messages-tuple": [pb.STREAM_MODE_MESSAGES], "messages": [pb.STREAM_MODE_MESSAGES, pb.STREAM_MODE_UPDATES],
    "tasks": [pb.STREAM_MODE_TASKS], "custom": [pb.STREAM_MODE_CUSTOM],
}


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


class StreamRenderer:
    """A run's events as LangGraph SSE events for the requested modes. The last frame rendered from each
    event carries its sequence as ``id:``, which is what a reconnecting client sends as Last-Event-ID."""

    def __init__(self, modes: list[str]) -> None:
        self.modes = set(modes)
        self.meta: dict[str, Any] = {}
        self._partial: dict[str, dict[str, Any]] = {}  # messages mode: message id -> accumulated message

    def _metadata(self, node: str, step: int) -> dict[str, Any]:
        return {**self.meta, "langgraph_node": node, "langgraph_step": step}

    def _messages(self, e: pb.MessageEvent) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        m = message(e.message)
        if "messages-tuple" in self.modes:
            out.append(("messages", [m, self._metadata(e.node, e.step)]))
        if "messages" in self.modes:
            mid = e.message.id
            if mid not in self._partial:
                out.append(("messages/metadata", {mid: {"metadata": self._metadata(e.node, e.step)}}))
            if e.message.chunk:
                acc = self._partial.setdefault(mid, {**m, "content": "", "type": "ai", "tool_call_chunks": []})
                acc["content"] += e.message.content
                acc["tool_call_chunks"] += m["tool_call_chunks"]
                out.append(("messages/partial", [acc]))
            else:
                self._partial.setdefault(mid, m)
                out.append(("messages/complete", [m]))
        return out

    def render(self, e: pb.RunEvent) -> list[bytes]:
        kind = e.WhichOneof("payload")
        out: list[tuple[str, Any]] = []
        if kind == "metadata":
            self.meta = {"run_id": e.metadata.run_id, "thread_id": e.metadata.thread_id,
                         "assistant_id": e.metadata.assistant_id, "graph_id": e.metadata.graph_id}
            out.append(("metadata", {"run_id": e.metadata.run_id, "attempt": e.metadata.attempt or 1}))
        elif kind == "values" and "values" in self.modes:
            out.append(("values", values(e.values, with_interrupts=True)))
        elif kind == "update":
            if "updates" in self.modes:
                out.append(("updates", {e.update.node: values(e.update.values)}))
            if "messages" in self.modes:  # a streamed message is complete once its node returned it
                for m in e.update.values.messages:
                    if m.id in self._partial and self._partial[m.id].get("type") == "ai":
                        self._partial[m.id] = message(m)
                        out.append(("messages/complete", [message(m)]))
        elif kind == "interrupt" and "updates" in self.modes:
            out.append(("updates", {"__interrupt__": [interrupt(i) for i in e.interrupt.interrupts]}))
        elif kind == "message":
            out.extend(self._messages(e.message))
        elif kind == "node_start" and "tasks" in self.modes:
            out.append(("tasks", {"id": e.node_start.task_id, "name": e.node_start.node, "input": None,
                                  "triggers": []}))
        elif kind == "node_end" and "tasks" in self.modes:
            out.append(("tasks", {"id": e.node_end.task_id, "name": e.node_end.node, "error": e.node_end.error or None,
                                  "interrupts": [], "result": {}}))
        elif kind == "custom" and "custom" in self.modes:
            out.append(("custom", whole_numbers(json_format.MessageToDict(e.custom))))
        elif kind == "error":
            out.append(("error", {"error": e.error.reason or e.error.code, "message": e.error.message}))
        elif kind == "end":
            out.append(("end", None))
        return [frame(name, data, e.sequence if i == len(out) - 1 else None) for i, (name, data) in enumerate(out)]
