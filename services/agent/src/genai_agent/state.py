"""Graph state dicts as domain ``StateValues`` and back, and the checkpointer's key of a thread.

A graph's state is a dict: ``messages`` (LangChain messages) plus each graph's own keys, which must be
JSON values (``jsonable`` makes sure, so every state can travel in a ``google.protobuf.Struct``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from langchain_core.messages import BaseMessage

from genai_agent.approval import approval_request
from genai_agent.types import Interrupt, StateValues


def checkpoint_thread(tenant: str, thread_id: str) -> str:
    """The checkpointer's thread id: tenants never share a key, even for the same thread id."""
    return f"{tenant}/{thread_id}"


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def interrupts(items: Iterable[Any]) -> tuple[Interrupt, ...]:
    """LangGraph's ``Interrupt`` objects as domain interrupts (typed when they ask for tool approval)."""
    out = []
    for item in items:
        value = jsonable(getattr(item, "value", None))
        out.append(Interrupt(str(getattr(item, "id", "")), value, approval_request(value)))
    return tuple(out)


def to_values(state: dict[str, Any] | None, pending: Iterable[Any] = ()) -> StateValues:
    state = dict(state or {})
    raw = state.pop("messages", None) or []
    messages = tuple(m for m in raw if isinstance(m, BaseMessage))
    return StateValues(messages, jsonable(state), interrupts(pending))


def to_input(values: StateValues) -> dict[str, Any]:
    out: dict[str, Any] = dict(values.values)
    if values.messages:
        out["messages"] = list(values.messages)
    return out
