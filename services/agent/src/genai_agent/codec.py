"""Domain values as JSON and back: how assistants' specs (YAML files, the database) and runs (the database)
are stored. Messages use LangChain's own dict form.

``spec_from_json`` is also where an agent spec's shape is checked: unknown keys and wrong types raise
``ValueError`` naming the key, so a bad YAML file stops the start with one clear message.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from langchain_core.messages import messages_from_dict, messages_to_dict

from genai_agent.approval import approval_request
from genai_agent.types import (
    AgentSpec,
    Command,
    Grader,
    Interrupt,
    ModelProvider,
    ModelSpec,
    MultitaskStrategy,
    OnDisconnect,
    Run,
    RunError,
    RunSpec,
    RunStatus,
    RunTimings,
    StateValues,
    StreamMode,
    Usage,
)

_SPEC_TYPES: dict[str, type | tuple[type, ...]] = {
    "system_prompt": str, "tools": list, "approval_tools": list, "max_steps": int, "first_tool_choice": str,
    "collection": str, "top_k": int, "max_plan_steps": int, "grader": str, "min_score": (int, float),
    "max_tool_rounds": int,
}
_MODEL_TYPES: dict[str, type | tuple[type, ...]] = {
    "provider": str, "name": str, "base_url": str, "temperature": (int, float), "max_tokens": int}


def _check(data: Any, types: dict[str, Any], path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    for key, value in data.items():
        if key not in types:
            raise ValueError(f"{path}.{key}: unknown key; known: {', '.join(types)}")
        if value is not None and (not isinstance(value, types[key]) or isinstance(value, bool)):
            raise ValueError(f"{path}.{key}: expected {getattr(types[key], '__name__', 'a number')}")
    return data


def _enum(kind: type, value: Any, path: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{path}: expected one of {[m.value for m in kind]}, not {value!r}") from None


def spec_from_json(data: dict[str, Any], path: str = "spec") -> AgentSpec:
    data = _check(data or {}, {**_SPEC_TYPES, "model": dict}, path)
    model = _check(data.get("model") or {}, _MODEL_TYPES, f"{path}.model")
    values = {k: v for k, v in data.items() if v is not None and k != "model"}
    for key in ("tools", "approval_tools"):
        if key in values:
            if not all(isinstance(t, str) for t in values[key]):
                raise ValueError(f"{path}.{key}: expected a list of tool names")
            values[key] = tuple(values[key])
    if "grader" in values:
        values["grader"] = _enum(Grader, values["grader"], f"{path}.grader")
    model_values = {k: v for k, v in model.items() if v is not None}
    if "provider" in model_values:
        model_values["provider"] = _enum(ModelProvider, model_values["provider"], f"{path}.model.provider")
    return AgentSpec(model=ModelSpec(**model_values), **values)


def spec_to_json(spec: AgentSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["tools"], data["approval_tools"] = list(spec.tools), list(spec.approval_tools)
    data["grader"] = spec.grader.value
    data["model"]["provider"] = spec.model.provider.value
    return data


def values_to_json(v: StateValues | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"messages": messages_to_dict(list(v.messages)), "values": v.values,
            "interrupts": [{"id": i.id, "value": i.value} for i in v.interrupts]}


def values_from_json(data: dict[str, Any] | None) -> StateValues | None:
    if data is None:
        return None
    return StateValues(tuple(messages_from_dict(data["messages"])), data["values"],
                       tuple(Interrupt(i["id"], i["value"], approval_request(i["value"])) for i in data["interrupts"]))


def _run_spec_to_json(s: RunSpec) -> dict[str, Any]:
    command = None
    if s.command is not None:
        command = {"resume": s.command.resume, "has_resume": s.command.has_resume,
                   "update": values_to_json(s.command.update), "goto": list(s.command.goto)}
    return {
        "assistant_id": s.assistant_id, "thread_id": s.thread_id, "input": values_to_json(s.input),
        "command": command, "metadata": s.metadata, "max_steps": s.max_steps, "configurable": s.configurable,
        "multitask_strategy": s.multitask_strategy.value, "create_thread": s.create_thread,
        "keep_thread": s.keep_thread, "checkpoint_id": s.checkpoint_id, "interrupt_before": list(s.interrupt_before),
        "interrupt_after": list(s.interrupt_after), "on_disconnect": s.on_disconnect.value,
        "stream_modes": sorted(m.value for m in s.stream_modes),
    }


def _run_spec_from_json(d: dict[str, Any]) -> RunSpec:
    command = None
    if d["command"] is not None:
        c = d["command"]
        command = Command(c["resume"], c["has_resume"], values_from_json(c["update"]), tuple(c["goto"]))
    return RunSpec(
        assistant_id=d["assistant_id"], thread_id=d["thread_id"], input=values_from_json(d["input"]), command=command,
        metadata=d["metadata"], max_steps=d["max_steps"], configurable=d["configurable"],
        multitask_strategy=MultitaskStrategy(d["multitask_strategy"]), create_thread=d["create_thread"],
        keep_thread=d["keep_thread"], checkpoint_id=d["checkpoint_id"], interrupt_before=tuple(d["interrupt_before"]),
        interrupt_after=tuple(d["interrupt_after"]), on_disconnect=OnDisconnect(d["on_disconnect"]),
        stream_modes=frozenset(StreamMode(m) for m in d["stream_modes"]),
    )


def run_to_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "thread_id": run.thread_id, "tenant": run.tenant, "assistant_id": run.assistant_id,
        "status": run.status.value, "created_at": run.created_at.isoformat(), "updated_at": run.updated_at.isoformat(),
        "spec": _run_spec_to_json(run.spec), "graph_id": run.graph_id, "stateless": run.stateless,
        "max_steps": run.max_steps, "error": asdict(run.error) if run.error else None, "usage": asdict(run.usage),
        "timings": asdict(run.timings), "steps": run.steps, "attempt": run.attempt,
        "interrupts": [{"id": i.id, "value": i.value} for i in run.interrupts], "last_sequence": run.last_sequence,
    }


def run_from_json(d: dict[str, Any]) -> Run:
    return Run(
        run_id=d["run_id"], thread_id=d["thread_id"], tenant=d["tenant"], assistant_id=d["assistant_id"],
        status=RunStatus(d["status"]), created_at=datetime.fromisoformat(d["created_at"]),
        updated_at=datetime.fromisoformat(d["updated_at"]), spec=_run_spec_from_json(d["spec"]),
        graph_id=d["graph_id"], stateless=d["stateless"], max_steps=d["max_steps"],
        error=RunError(**d["error"]) if d["error"] else None, usage=Usage(**d["usage"]),
        timings=RunTimings(**d["timings"]), steps=d["steps"], attempt=d["attempt"],
        interrupts=tuple(Interrupt(i["id"], i["value"], approval_request(i["value"])) for i in d["interrupts"]),
        last_sequence=d["last_sequence"],
    )


def spec_fields() -> list[str]:
    return [f.name for f in fields(AgentSpec)]
