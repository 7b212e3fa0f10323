"""Remote engine: any OpenAI-compatible server (vLLM, Ollama, hosted APIs, our own gateway) through
the official ``openai`` SDK. The prompt is rendered here and sent to ``/v1/completions`` as text,
so chat templates, tools and constraints behave the same as with the local engines."""

from __future__ import annotations

from collections.abc import AsyncIterator

from genai_core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable

from genai_inference.engines.remote import RemoteBackend
from genai_inference.types import ConstraintKind, FinishEvent, FinishReason, GenerationRequest, TokenEvent

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "tool_calls": FinishReason.TOOL_CALLS}


def _response_format(request: GenerationRequest) -> dict | None:
    c = request.constraint
    if c is None:
        return None
    if c.kind is ConstraintKind.JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": c.value, "strict": True}}
    if c.kind is ConstraintKind.JSON_OBJECT:
        return {"type": "json_object"}
    raise FailedPrecondition(f"the openai engine cannot apply a {c.kind.value} constraint; use a JSON schema")


class OpenAIBackend(RemoteBackend):
    name = "openai"

    def __init__(self, settings, source, tokenizer) -> None:
        super().__init__(settings, source, tokenizer)
        import openai

        self._openai = openai
        self._client = openai.AsyncOpenAI(
            base_url=settings.remote_url.rstrip("/"), api_key=settings.remote_api_key or "unused", max_retries=2
        )
        self._model = settings.remote_model or source.id

    def _translate(self, exc: Exception) -> Exception:
        o = self._openai
        if isinstance(exc, o.NotFoundError):
            return NotFound(f"the remote server has no model '{self._model}': {exc}")
        if isinstance(exc, o.BadRequestError | o.UnprocessableEntityError):
            return InvalidArgument.for_field("prompt", f"the remote server refused the request: {exc}")
        if isinstance(exc, o.RateLimitError):
            return ResourceExhausted(f"the remote server is rate limiting: {exc}")
        return Unavailable(f"the remote server at {self.settings.remote_url} failed: {exc}")

    async def _completion(self, request: GenerationRequest, index: int) -> AsyncIterator[TokenEvent | FinishEvent]:
        s = request.sampling
        extra: dict = {}
        fmt = _response_format(request)
        if fmt:
            extra["response_format"] = fmt
        if s.top_k:
            extra["top_k"] = s.top_k
        if s.repetition_penalty != 1.0:
            extra["repetition_penalty"] = s.repetition_penalty
        try:
            stream = await self._client.completions.create(
                model=self._model,
                prompt=request.prompt_text,
                max_tokens=s.max_new_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                stop=list(s.stop) or None,
                seed=s.seed,
                presence_penalty=s.presence_penalty,
                frequency_penalty=s.frequency_penalty,
                stream=True,
                extra_body=extra or None,
            )
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.text:
                        yield TokenEvent(index, (), choice.text)
                    if choice.finish_reason:
                        yield FinishEvent(index, _FINISH.get(choice.finish_reason, FinishReason.STOP))
                        return
        except self._openai.APIError as exc:
            raise self._translate(exc) from exc
