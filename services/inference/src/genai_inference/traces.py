"""What a generation looks like in a trace: the RPC's span annotated as an LLM call (``genai_core.spans``).

Model, engine, sampling parameters, token usage, finish reasons and the time to the first token always;
the prompt and the completions only when the operator turned content capture on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from genai_core import spans

from genai_inference.chat import CompletionResult
from genai_inference.types import DoneEvent, FinishEvent, GenerationRequest, ToolSpec


def model_name(gen: GenerationRequest) -> str:
    """The model that answers: the base id, or ``base:adapter``."""
    return f"{gen.model}:{gen.adapter}" if gen.adapter else gen.model


def llm_span(operation: spans.Operation, gen: GenerationRequest, engine: str, *, stream: bool,
             chat: Callable[[], tuple[Sequence[Mapping[str, Any]], Sequence[ToolSpec]]] | None = None,
             ) -> spans.GenAISpan:
    """Annotate the current span with the request; a chat's messages and tools come from ``chat`` (called
    only when content is captured), else the prompt is the prompt text."""
    s = gen.sampling
    span = spans.current(operation).request(
        model=model_name(gen), provider=engine, max_tokens=s.max_new_tokens, temperature=s.temperature,
        top_p=s.top_p, top_k=s.top_k or None, frequency_penalty=s.frequency_penalty or None,
        presence_penalty=s.presence_penalty or None, stop_sequences=s.stop, seed=s.seed, choice_count=s.n,
        stream=stream,
    )
    if not span.captures:
        return span
    if chat is None:
        return span.input_text(gen.prompt_text)
    messages, tools = chat()
    return span.input_messages(messages).tools(
        [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in tools])


def reasons(finishes: Sequence[FinishEvent | None]) -> list[str]:
    return [f.reason.value if f is not None else "error" for f in finishes]


def outputs(results: Sequence[CompletionResult]) -> list[dict[str, Any]]:
    """Completions as assistant messages (text and parsed tool calls)."""
    return [
        {"role": "assistant", "content": r.text, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments if c.arguments is not None else c.raw_arguments}}
            for c in r.tool_calls]}
        for r in results
    ]


def finished(span: spans.GenAISpan, gen: GenerationRequest, done: DoneEvent, finish_reasons: Sequence[str],
             results: Sequence[CompletionResult] = (), *, first_token: bool = False) -> None:
    """Usage, finish reasons, the answering model and the completions; ``first_token`` adds the TTFT event
    from the timings (a unary call, whose first token was not seen as it came)."""
    u = done.usage
    span.usage(u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens).response(
        model=model_name(gen), id=gen.request_id, finish_reasons=finish_reasons)
    span.attributes(**{"genai.inference.queue_seconds": done.timings.queue_s})
    if first_token:
        span.first_token(done.timings.time_to_first_token_s)
    if span.captures and results:
        span.output_messages(outputs(results), finish_reasons)
