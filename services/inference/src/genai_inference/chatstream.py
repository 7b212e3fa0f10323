"""Turn token events into chat deltas: content streams as it comes; tool calls stream as calls.

With tools active, text that might open a ``<tool_call>`` block is held back until it is clear,
so clients never see the block's markup as content. Calls are emitted when their completion
finishes, parsed, with their full arguments (one delta per call).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genai_inference.chat import CompletionResult, split_tool_calls
from genai_inference.constraints import TOOL_CALL_BEGIN
from genai_inference.types import FinishEvent, TokenEvent, TokenLogprob


@dataclass(frozen=True)
class ToolCallPiece:
    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Delta:
    index: int
    role: str = ""
    content: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_calls: tuple[ToolCallPiece, ...] = ()


@dataclass
class _State:
    result: CompletionResult
    sent: int = 0  # characters of result.text already sent as content
    started: bool = False
    in_call: bool = False
    pending: list[TokenLogprob] = field(default_factory=list)


class ChatStreamAssembler:
    def __init__(self, n: int, *, tools: bool) -> None:
        self._tools = tools
        self._states = {i: _State(CompletionResult(i)) for i in range(n)}

    def _safe_end(self, state: _State) -> int:
        """How much of the text may be sent: all of it, minus a possible start of TOOL_CALL_BEGIN."""
        text = state.result.text
        if not self._tools:
            return len(text)
        opened = text.find(TOOL_CALL_BEGIN)
        if opened >= 0:
            state.in_call = True
            return opened
        for keep in range(min(len(TOOL_CALL_BEGIN) - 1, len(text)), 0, -1):
            if TOOL_CALL_BEGIN.startswith(text[-keep:]):
                return len(text) - keep
        return len(text)

    def push(self, event: TokenEvent) -> list[Delta]:
        state = self._states[event.index]
        state.result.text += event.text
        state.result.token_ids.extend(event.token_ids)
        state.result.logprobs.extend(event.logprobs)
        state.pending.extend(event.logprobs)
        role = "" if state.started else "assistant"
        end = state.sent if state.in_call else max(state.sent, self._safe_end(state))
        content = state.result.text[state.sent : end]
        if not content and state.started and not state.pending:
            return []
        state.sent = end
        state.started = True
        logprobs, state.pending = tuple(state.pending), []
        return [Delta(event.index, role, content, logprobs)]

    def finish(self, event: FinishEvent) -> list[Delta]:
        state = self._states[event.index]
        state.result.finish = event
        if self._tools:
            split_tool_calls(state.result)
        deltas = []
        rest = state.result.text[state.sent :]
        if rest:
            deltas.append(Delta(event.index, "" if state.started else "assistant", rest))
            state.sent = len(state.result.text)
            state.started = True
        if state.result.tool_calls:
            deltas.append(
                Delta(event.index, tool_calls=tuple(
                    ToolCallPiece(i, call.id, call.name, call.raw_arguments)
                    for i, call in enumerate(state.result.tool_calls)
                ))
            )
        return deltas

    def results(self) -> list[CompletionResult]:
        return [self._states[i].result for i in sorted(self._states)]
