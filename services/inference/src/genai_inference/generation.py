"""Generation: resolve the model or adapter a request names, check every rule about its values, run
it on the backend and assemble the event stream into results. The gRPC servicer is a thin adapter over
:class:`Inference`; chats are rendered by :mod:`genai_inference.chat`.

Rule owners: this module checks sampling values, the prompt (not empty, token ids inside the vocabulary,
prompt + max_new_tokens within the context) and adapter names/paths; backends trust what it lets through.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genai_core.errors import InvalidArgument, NotFound, ResourceExhausted

from genai_inference.chat import ChatOptions, CompletionResult, render_chat, split_tool_calls
from genai_inference.engines.base import Backend, adapter_not_loaded, adapters_unsupported
from genai_inference.settings import InferenceSettings
from genai_inference.types import (
    Constraint,
    DoneEvent,
    Event,
    FinishEvent,
    GenerationRequest,
    ModelInfo,
    Sampling,
    Timings,
    TokenEvent,
    Usage,
)


@dataclass
class GenerationResult:
    model: str
    completions: list[CompletionResult]
    done: DoneEvent


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
        ("sampling.prompt_logprobs_start",
         s.prompt_logprobs_start == 0 or (s.prompt_logprobs is not None and not s.echo),
         "needs prompt_logprobs and cannot be combined with echo (which returns the whole prompt)"),
        ("sampling.prompt_logprobs_start", s.prompt_logprobs_start <= context_length,
         f"must be at most the context length ({context_length})"),
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

    def __init__(self, backend: Backend, tokenizer: Any, settings: InferenceSettings) -> None:
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
        if not self.backend.supports_adapters:
            raise adapters_unsupported(self.backend.name)
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
        self.backend.load_adapter(name, location)
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
            raise adapter_not_loaded(name)
        self.backend.unload_adapter(name)
        del self._adapters[name]
        return info

    # -- prompts ----------------------------------------------------------------------------

    def render_chat(self, messages: Sequence[Mapping[str, Any]], options: ChatOptions
                    ) -> tuple[str, Constraint | None]:
        return render_chat(self.tokenizer, messages, options)

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
        """A checked request: the owner of the prompt rules (empty, vocabulary, context length)."""
        base, adapter = self.resolve(model)
        sampling = check_sampling(sampling, self.settings, base.context_length)
        if ids:
            prompt_ids = tuple(int(i) for i in ids)
            bad = [i for i in prompt_ids if not 0 <= i < base.vocab_size]
            if bad:
                raise InvalidArgument.for_field(
                    "prompt.token_ids", f"token id {bad[0]} is outside the vocabulary of {base.vocab_size} tokens")
            prompt_text = self.tokenizer.decode(prompt_ids)
        else:
            prompt_ids = tuple(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids) if text else ()
            prompt_text = text
        if not prompt_ids:
            raise InvalidArgument.for_field("prompt", "the prompt is empty; send text or token ids")
        if len(prompt_ids) + sampling.max_new_tokens > base.context_length:
            raise InvalidArgument.for_field(
                "prompt", f"{len(prompt_ids)} prompt tokens + max_new_tokens {sampling.max_new_tokens} exceed the "
                f"model's context of {base.context_length} tokens; shorten the prompt or lower max_new_tokens")
        return GenerationRequest(
            request_id or uuid.uuid4().hex, base.id, prompt_ids, prompt_text, sampling, adapter, constraint, deadline
        )

    # -- running ----------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        return self.backend.generate(request)

    def cancel(self, request_id: str) -> bool:
        if not request_id:
            raise InvalidArgument.for_field("target_request_id", "name the request to cancel")
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
        empty = DoneEvent(Usage(len(request.prompt_ids), 0), Timings(0.0, 0.0, 0.0))
        return GenerationResult(request.model if not request.adapter else f"{request.model}:{request.adapter}",
                                [results[i] for i in sorted(results)], done or empty)


def _dir_revision(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.name.encode())
        digest.update(item.read_bytes())
    return digest.hexdigest()
