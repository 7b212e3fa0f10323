"""Remote engine: a Text Generation Inference server (or anything speaking its API, such as our gateway),
through Hugging Face's ``text-generation`` client. Prompts are rendered here and sent as text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from genai_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable

from genai_inference.engines.remote import RemoteBackend
from genai_inference.types import ConstraintKind, FinishEvent, FinishReason, GenerationRequest, TokenEvent

_FINISH = {"length": FinishReason.LENGTH, "eos_token": FinishReason.STOP, "stop_sequence": FinishReason.STOP_SEQUENCE}


def _grammar(request: GenerationRequest):
    from text_generation.types import Grammar, GrammarType

    c = request.constraint
    if c is None:
        return None
    if c.kind is ConstraintKind.JSON_SCHEMA:
        return Grammar(type=GrammarType.Json, value=c.value)
    if c.kind is ConstraintKind.JSON_OBJECT:
        return Grammar(type=GrammarType.Json, value={"type": "object"})
    if c.kind is ConstraintKind.REGEX:
        return Grammar(type=GrammarType.Regex, value=c.value)
    if c.kind is ConstraintKind.CHOICES:
        import re

        return Grammar(type=GrammarType.Regex, value="|".join(re.escape(choice) for choice in c.value))
    raise FailedPrecondition(f"the tgi engine cannot apply a {c.kind.value} constraint; use json_schema or regex")


def _translate(exc: Exception) -> Exception:
    from text_generation import errors

    if isinstance(exc, errors.ValidationError | errors.BadRequestError):
        return InvalidArgument.for_field("prompt", f"the TGI server refused the request: {exc}")
    if isinstance(exc, errors.OverloadedError | errors.RateLimitExceededError):
        return ResourceExhausted(f"the TGI server is overloaded: {exc}")
    return Unavailable(f"the TGI server failed: {exc}")


class TgiBackend(RemoteBackend):
    name = "tgi"

    def __init__(self, settings, source, tokenizer) -> None:
        super().__init__(settings, source, tokenizer)
        from text_generation import AsyncClient

        headers = {"Authorization": f"Bearer {settings.remote_api_key}"} if settings.remote_api_key else None
        self._client = AsyncClient(settings.remote_url.rstrip("/"), headers=headers, timeout=600)

    async def _completion(self, request: GenerationRequest, index: int) -> AsyncIterator[TokenEvent | FinishEvent]:
        from text_generation import errors

        s = request.sampling
        if s.logprobs and s.top_logprobs:
            top_n = s.top_logprobs
        else:
            top_n = None
        kwargs = dict(
            do_sample=not s.greedy,
            max_new_tokens=s.max_new_tokens,
            repetition_penalty=s.repetition_penalty if s.repetition_penalty != 1.0 else None,
            frequency_penalty=s.frequency_penalty or None,
            seed=s.seed,
            stop_sequences=list(s.stop) or None,
            temperature=None if s.greedy else s.temperature,
            top_k=s.top_k or None,
            top_p=s.top_p if s.top_p < 1.0 else None,
            top_n_tokens=top_n,
            grammar=_grammar(request),
        )
        try:
            async for chunk in self._client.generate_stream(request.prompt_text, **kwargs):
                token = chunk.token
                if not token.special:
                    yield TokenEvent(index, (token.id,), token.text)
                if chunk.details is not None:
                    reason = _FINISH.get(getattr(chunk.details.finish_reason, "value", str(chunk.details.finish_reason)),
                                         FinishReason.STOP)
                    yield FinishEvent(index, reason)  # TGI does not say which stop sequence matched
                    return
        except errors.UnknownError as exc:
            raise _translate(exc) from exc
        except (errors.ValidationError, errors.BadRequestError, errors.OverloadedError,
                errors.RateLimitExceededError, errors.ShardNotReadyError, errors.ShardTimeoutError,
                errors.NotFoundError, errors.NotSupportedError) as exc:
            raise _translate(exc) from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise Unavailable(f"cannot reach the TGI server at {self.settings.remote_url}: {exc}") from exc
