"""Human approval of tool calls: the interrupt a tools node raises, and the decisions a resume answers with.

The interrupt's value (what clients see under ``__interrupt__``)::

    {"type": "tool_approval", "reason": "http_get requires approval",
     "tool_calls": [{"id": "call_1", "name": "http_get", "args": {"url": "..."}}],
     "allowed_decisions": ["approve", "deny", "edit"]}

A resume answers with one decision for all calls (``"approve"``, ``"deny"``, ``{"type": "deny", "message":
"why"}``, ``{"type": "edit", "args": {...}}``), a list or ``{"decisions": [...]}`` with one per call in
order, or ``{"<tool call id>": decision, ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genai_core.errors import InvalidArgument

from genai_agent.types import ApprovalRequest, ToolCall

APPROVAL = "tool_approval"  # the "type" of the interrupt value the tools node raises for approvals


_APPROVE = {"approve", "approved", "accept", "yes", "ok"}
_DENY = {"deny", "denied", "reject", "rejected", "no"}


@dataclass(frozen=True)
class Decision:
    kind: str  # "approve", "deny" or "edit"
    message: str = ""
    args: dict[str, Any] | None = None


def _decision(value: Any, path: str) -> Decision:
    if isinstance(value, bool):
        return Decision("approve" if value else "deny")
    if isinstance(value, str) and value.lower() in _APPROVE | _DENY:
        return Decision("approve" if value.lower() in _APPROVE else "deny")
    if isinstance(value, dict):
        kind = str(value.get("type", "")).lower()
        if kind in _APPROVE:
            return Decision("approve")
        if kind in _DENY:
            return Decision("deny", str(value.get("message") or value.get("reason") or ""))
        if kind == "edit":
            args = value.get("args")
            if args is None and isinstance(value.get("edited_action"), dict):
                args = value["edited_action"].get("args")
            if not isinstance(args, dict):
                raise InvalidArgument.for_field(f"{path}.args", "an edit needs the new arguments as a JSON object")
            return Decision("edit", args=args)
    raise InvalidArgument.for_field(
        path, 'a decision is "approve", "deny", {"type": "deny", "message": ...} or {"type": "edit", "args": {...}}')


def parse_decisions(answer: Any, pending: Sequence[ToolCall], path: str = "command.resume") -> dict[str, Decision]:
    """The human's answer to an approval interrupt, as one decision per pending call id.

    Accepted: one decision for all calls ("approve", "deny", a decision object), ``{"decisions": [...]}`` or
    a list with one decision per call in order, or ``{<tool call id>: decision}``.
    """
    ids = [c.id for c in pending]
    if isinstance(answer, dict) and "decisions" in answer:
        answer = answer["decisions"]
        path = f"{path}.decisions"
    if isinstance(answer, list):
        if len(answer) != len(ids):
            raise InvalidArgument.for_field(path, f"give one decision per pending tool call ({len(ids)}), not {len(answer)}")
        return {i: _decision(v, f"{path}[{n}]") for n, (i, v) in enumerate(zip(ids, answer, strict=True))}
    if isinstance(answer, dict) and answer and set(answer) <= set(ids):
        missing = [i for i in ids if i not in answer]
        if missing:
            raise InvalidArgument.for_field(path, f"no decision for tool call(s) {', '.join(missing)}")
        return {i: _decision(answer[i], f"{path}.{i}") for i in ids}
    one = _decision(answer, path)
    return {i: one for i in ids}


def approval_value(calls: Sequence[ToolCall]) -> dict[str, Any]:
    names = ", ".join(sorted({c.name for c in calls}))
    return {"type": APPROVAL, "reason": f"{names} requires approval",
            "tool_calls": [{"id": c.id, "name": c.name, "args": c.args} for c in calls],
            "allowed_decisions": ["approve", "deny", "edit"]}


def approval_request(value: Any) -> ApprovalRequest | None:
    """The typed form of an approval interrupt's value; None for any other interrupt."""
    if not isinstance(value, dict) or value.get("type") != APPROVAL:
        return None
    calls = tuple(ToolCall(str(c.get("id", "")), str(c.get("name", "")), dict(c.get("args") or {}))
                  for c in value.get("tool_calls", []))
    return ApprovalRequest(calls, str(value.get("reason", "")))


