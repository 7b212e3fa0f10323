"""The inference domain: validate requests, resolve models and adapters, render chats, run the
backend, and turn event streams into results. The gRPC servicer is a thin adapter over this."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genai_core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

from genai_inference.constraints import parse_tool_calls, tool_prompt
from genai_inference.engines.base import Backend
from genai_inference.settings import InferenceSettings
from genai_inference.types import (
    Constraint,
    ConstraintKind,
    DoneEvent,
    Event,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Sampling,
    TokenEvent,
    TokenLogprob,
    ToolCallSpec,
    ToolSpec,
)

logger = logging.getLogger(__name__)

TOOL_OPEN = "<tool_call>"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's JSON did not parse
    raw_arguments: str = ""


@dataclass
class CompletionResult:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: FinishEvent | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class GenerationResult:
    model: str
    completions: list[CompletionResult]
    done: DoneEvent


@dataclass(frozen=True)
class ChatOptions:
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | named
    tool_name: str = ""
    parallel_tool_calls: bool = True
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)


def check_sampling(sampling: Sampling, settings: InferenceSettings, context_length: int) -> Sampling:
    """Reject out-of-range values with the field to fix; cap max_new_tokens."""
    s = sampling
    checks = [
        ("sampling.max_new_tokens",
         (1 if s.prompt_logprobs is None else 0) <= s.max_new_tokens <= min(settings.max_new_tokens, context_length),
         f"must be between 1 (0 when only scoring the prompt) and {min(settings.max_new_tokens, context_length)}"),
        ("sampling.min_new_tokens", 0 <= s.min_new_tokens <= s.max_new_tokens, "must be between 0 and max_new_tokens"),
        ("sampling.temperature", 0.0 <= s.temperature <= 10.0, "must be between 0 and 10"),
        ("sampling.top_p", 0.0 < s.top_p <= 1.0, "must be in (0, 1]"),
        ("sampling.min_p", 0.0 <= s.min_p < 1.0, "must be in [0, 1)"),
        ("sampling.top_k", s.top_k >= 0, "must not be negative"),
        ("sampling.repetition_penalty", 0.0 < s.repetition_penalty <= 10.0, "must be in (0, 10]"),
        ("sampling.presence_penalty", -2.0 <= s.presence_penalty <= 2.0, "must be between -2 and 2"),
        ("sampling.frequency_penalty", -2.0 <= s.frequency_penalty <= 2.0, "must be between -2 and 2"),
        ("sampling.n", 1 <= s.n <= settings.max_samples, f"must be between 1 and {settings.max_samples}"),
        ("sampling.top_logprobs", 0 <= s.top_logprobs <= settings.max_top_logprobs,
         f"must be between 0 and {settings.max_top_logprobs}"),
        ("sampling.prompt_logprobs", s.prompt_logprobs is None or 0 <= s.prompt_logprobs <= settings.max_top_logprobs,
         f"must be between 0 and {settings.max_top_logprobs}"),
        ("sampling.stop_sequences", len(s.stop) <= settings.max_stop_sequences,
         f"at most {settings.max_stop_sequences} stop sequences"),
    ]
    for name, ok, message in checks:
        if not ok:
            raise InvalidArgument.for_field(name, message)
    if any(not stop for stop in s.stop):
        raise InvalidArgument.for_field("sampling.stop_sequences", "stop sequences must not be empty")
    return s


class Inference:
    """What the servicer calls: one instance per process, built in the composition root."""

    def __init__(self, backend: Backend, tokenizer, settings: InferenceSettings) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.settings = settings
        self._adapters: dict[str, ModelInfo] = {}

    # -- models and adapters ----------------------------------------------------------------

    @property
    def base(self) -> ModelInfo:
        info = self.backend.models()[0]
        return replace(info, max_new_tokens=min(info.max_new_tokens, self.settings.max_new_tokens))

    def models(self) -> list[ModelInfo]:
        return [self.base, *self._adapters.values()]

    def resolve(self, model: str) -> tuple[ModelInfo, str | None]:
        """``""`` → default; ``base``; ``adapter``; ``base:adapter`` (vLLM style)."""
        base = self.base
        name = model.strip()
        if not name or name == base.id:
            return base, None
        base_part, sep, adapter = name.partition(":")
        if sep and base_part != base.id:
            raise NotFound(f"model '{base_part}' is not served here; try '{base.id}'", resource_type="model",
                           resource_name=base_part)
        adapter = adapter if sep else name
        if adapter in self._adapters:
            return base, adapter
        known = ", ".join([base.id, *self._adapters]) or base.id
        raise NotFound(f"model or adapter '{name}' does not exist; available: {known}", resource_type="model",
                       resource_name=name)

    def get_model(self, model: str) -> ModelInfo:
        base, adapter = self.resolve(model)
        return self._adapters[adapter] if adapter else base

    def load_adapter(self, name: str, path: str, root: Path | None = None) -> ModelInfo:
        """Load the PEFT directory ``path`` under ``root`` (default: the adapters directory)."""
        engine = getattr(self.backend, "engine", None)
        if engine is None or not getattr(engine, "supports_adapters", False):
            raise FailedPrecondition(
                f"the {self.backend.name} engine cannot serve LoRA adapters; run the inference service with "
                "GENAI_INFERENCE_ENGINE=torch", reason="ADAPTERS_UNSUPPORTED")
        if not name or ":" in name or name == self.base.id:
            raise InvalidArgument.for_field("adapter_name", "use a non-empty name without ':' that is not the base id")
        if len(self._adapters) >= self.settings.max_loaded_adapters:
            raise ResourceExhausted(f"{self.settings.max_loaded_adapters} adapters are loaded; unload one first")
        root = (root or self.settings.adapters_dir).resolve()
        location = (root / path).resolve()
        if not location.is_relative_to(root):
            raise InvalidArgument.for_field("path", f"'{path}' is outside the adapters directory {root}")
        if not location.is_dir():
            raise InvalidArgument.for_field("path", f"'{path}' is not a directory under {root}")
        engine.load_adapter(name, location)
        info = replace(self.base, id=f"{self.base.id}:{name}", base_model=self.base.id, is_adapter=True,
                       source=str(location), revision=_dir_revision(location))
        self._adapters[name] = info
        return info

    def unload_adapter(self, name: str) -> ModelInfo:
        base_part, sep, adapter = name.partition(":")
        if sep and base_part == self.base.id:
            name = adapter
        info = self._adapters.get(name)
        if info is None:
            raise NotFound(f"adapter '{name}' is not loaded", resource_type="adapter", resource_name=name)
        self.backend.engine.unload_adapter(name)
        del self._adapters[name]
        return info

    # -- prompts ----------------------------------------------------------------------------

    def encode(self, text: str) -> tuple[int, ...]:
        if not text:
            raise InvalidArgument.for_field("text", "the prompt is empty; send some text")
        return tuple(self.tokenizer(text).input_ids)

    def render_chat(self, messages: Sequence[dict[str, Any]], options: ChatOptions) -> tuple[str, Constraint | None]:
        if not messages:
            raise InvalidArgument.for_field("messages", "send at least one message")
        for i, message in enumerate(messages):
            if not message.get("role"):
                raise InvalidArgument.for_field(f"messages[{i}].role", "set a role such as 'user'")
        msgs = [dict(m) for m in messages]
        constraint = None
        if options.tools and options.tool_choice != "none":
            names = {t.name for t in options.tools}
            if options.tool_choice == "named" and options.tool_name not in names:
                raise InvalidArgument.for_field("tool_choice", f"'{options.tool_name}' is not one of the tools {sorted(names)}")
            fragment = tool_prompt(options.tools)
            if msgs[0]["role"] == "system":
                msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{fragment}".strip()
            else:
                msgs.insert(0, {"role": "system", "content": fragment})
            constraint = Constraint(
                ConstraintKind.TOOL_CALLS,
                ToolCallSpec(options.tools, options.tool_choice, options.tool_name, options.parallel_tool_calls),
            )
        for m in msgs:  # templates that know nothing of tool calls still see them as text
            if m.get("tool_calls") and not m.get("content"):
                m["content"] = "\n".join(
                    f'{TOOL_OPEN}\n{json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})}\n</tool_call>'
                    for c in m["tool_calls"]
                )
        try:
            text = self.tokenizer.apply_chat_template(
                msgs, add_generation_prompt=True, tokenize=False, **dict(options.template_kwargs)
            )
        except Exception as exc:  # jinja errors carry the template's own message
            raise InvalidArgument.for_field("messages", f"the chat template could not render them: {exc}") from exc
        return text, constraint

    # -- running ----------------------------------------------------------------------------

    def request(
        self,
        request_id: str,
        model: str,
        *,
        text: str = "",
        ids: Sequence[int] = (),
        sampling: Sampling,
        constraint: Constraint | None,
        deadline: float | None = None,
        add_special_tokens: bool = True,
    ) -> GenerationRequest:
        base, adapter = self.resolve(model)
        sampling = check_sampling(sampling, self.settings, base.context_length)
        if ids:
            prompt_ids = tuple(int(i) for i in ids)
            prompt_text = self.tokenizer.decode(prompt_ids)
        else:
            if not text:
                raise InvalidArgument.for_field("prompt", "the prompt is empty; send text or token ids")
            prompt_ids = tuple(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids)
            prompt_text = text
        if len(prompt_ids) + sampling.max_new_tokens > base.context_length:
            raise InvalidArgument.for_field(
                "prompt", f"{len(prompt_ids)} prompt tokens + max_new_tokens {sampling.max_new_tokens} exceed the "
                f"model's context of {base.context_length} tokens; shorten the prompt or lower max_new_tokens")
        return GenerationRequest(
            request_id or uuid.uuid4().hex, base.id, prompt_ids, prompt_text, sampling, adapter, constraint, deadline
        )

    def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        return self.backend.generate(request)

    def cancel(self, request_id: str) -> bool:
        return self.backend.cancel(request_id)

    async def collect(self, request: GenerationRequest, *, tools: bool = False) -> GenerationResult:
        """Run to the end and assemble the completions (the unary RPCs)."""
        results = {i: CompletionResult(i) for i in range(request.sampling.n)}
        done = None
        async for event in self.stream(request):
            if isinstance(event, TokenEvent):
                result = results[event.index]
                result.text += event.text
                result.token_ids.extend(event.token_ids)
                result.logprobs.extend(event.logprobs)
            elif isinstance(event, FinishEvent):
                results[event.index].finish = event
            elif isinstance(event, DoneEvent):
                done = event
        if tools:
            for result in results.values():
                split_tool_calls(result)
        return GenerationResult(request.model if not request.adapter else f"{request.model}:{request.adapter}",
                                [results[i] for i in sorted(results)], done or _empty_done(request))


def split_tool_calls(result: CompletionResult) -> None:
    """Move ``<tool_call>`` blocks out of the text into ``tool_calls``; finish becomes TOOL_CALLS."""
    content, calls = parse_tool_calls(result.text)
    if not calls:
        return
    opened = content.find(TOOL_OPEN)
    if opened >= 0:  # a call cut off by max_new_tokens is neither a call nor content
        content = content[:opened].rstrip()
    unique: list[tuple[str, dict]] = []
    for call in calls:  # small models tend to repeat a call verbatim; once is what they meant
        if call not in unique:
            unique.append(call)
    result.text = content
    result.tool_calls = [ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments, json.dumps(arguments))
                         for name, arguments in unique]
    if result.finish is None or result.finish.reason not in (FinishReason.CANCELLED, FinishReason.ERROR):
        result.finish = FinishEvent(result.index, FinishReason.TOOL_CALLS)


def _empty_done(request: GenerationRequest) -> DoneEvent:
    from genai_inference.types import Timings, Usage

    return DoneEvent(Usage(len(request.prompt_ids), 0), Timings(0.0, 0.0, 0.0))


def _dir_revision(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.name.encode())
        digest.update(item.read_bytes())
    return digest.hexdigest()


def now() -> float:
    return time.monotonic()
