"""What the remote engines share: per-request task tracking for cancel, model info, n via fan-out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from genai_inference.engines.base import adapter_not_loaded, adapters_unsupported
from genai_inference.models import ModelSource
from genai_inference.settings import InferenceSettings
from genai_inference.types import (
    DoneEvent,
    Event,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Timings,
    TokenEvent,
    Usage,
)

# One completion's stream: yields TokenEvents, returns by raising StopAsyncIteration after a FinishEvent.
CompletionStream = Callable[[GenerationRequest, int], AsyncIterator[TokenEvent | FinishEvent]]


class RemoteBackend:
    """Runs ``n`` completions of a request as ``n`` remote streams and merges their events."""

    name = "remote"

    def __init__(self, settings: InferenceSettings, source: ModelSource, tokenizer) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.info = ModelInfo(
            id=source.id, revision=source.revision, engine=self.name, context_length=source.context_length,
            max_new_tokens=source.context_length, vocab_size=len(tokenizer), has_chat_template=True,
            source=settings.remote_url,
        )
        self._tasks: dict[str, asyncio.Task] = {}

    async def start(self) -> None:
        await self._check()

    async def _check(self) -> None:
        """Fail fast at start when the remote server is not reachable."""

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def models(self) -> list[ModelInfo]:
        return [self.info]

    supports_adapters = False
    adapters: Mapping[str, Path] = MappingProxyType({})

    def load_adapter(self, name: str, path: Path) -> None:
        raise adapters_unsupported(self.name)

    def unload_adapter(self, name: str) -> None:
        raise adapter_not_loaded(name)

    def _completion(self, request: GenerationRequest, index: int) -> AsyncIterator[TokenEvent | FinishEvent]:
        raise NotImplementedError

    def cancel(self, request_id: str) -> bool:
        task = self._tasks.get(request_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        queue: asyncio.Queue = asyncio.Queue()
        started = time.monotonic()
        first: list[float] = []
        counts = [0] * request.sampling.n

        async def pump(index: int) -> None:
            sub = request if request.sampling.seed is None else replace(
                request, sampling=replace(request.sampling, seed=request.sampling.seed + index))
            async for event in self._completion(sub, index):
                if isinstance(event, TokenEvent):
                    counts[index] += len(event.token_ids) or 1
                    if not first:
                        first.append(time.monotonic())
                await queue.put(event)

        async def run_all() -> None:
            try:
                await asyncio.gather(*(pump(i) for i in range(request.sampling.n)))
            except asyncio.CancelledError:
                for i in range(request.sampling.n):
                    await queue.put(FinishEvent(i, FinishReason.CANCELLED))
            except BaseException as exc:  # noqa: BLE001 - delivered to the consumer
                await queue.put(exc)
            await queue.put(None)

        task = asyncio.create_task(run_all())
        self._tasks[request.request_id] = task
        try:
            while (event := await queue.get()) is not None:
                if isinstance(event, BaseException):
                    raise event
                yield event
            end = time.monotonic()
            yield DoneEvent(
                Usage(len(request.prompt_ids), sum(counts)),
                Timings(0.0, (first[0] if first else end) - started, end - started),
            )
        finally:
            task.cancel()
            self._tasks.pop(request.request_id, None)
