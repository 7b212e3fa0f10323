"""The two shapes an engine can take.

* ``KVEngine``: a local model that runs one forward pass at a time over a ``KVBatch``; the
  shared continuous-batching scheduler drives it (torch, onnxruntime).
* ``Backend``: anything that turns a ``GenerationRequest`` into a stream of events itself
  (the scheduler wrapped around a KVEngine, llama.cpp, and the remote TGI/OpenAI engines).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import torch

from genai_inference.kv import KVBatch
from genai_inference.types import Event, GenerationRequest, ModelInfo


class KVEngine(Protocol):
    name: str
    info: ModelInfo
    eos_token_ids: frozenset[int]

    def prefill(self, ids: Sequence[int], *, adapter: str | None = None, all_logits: bool = False) -> tuple[
        torch.Tensor, KVBatch
    ]:
        """Run a prompt; return float32 logits ([L, V] with all_logits, else [1, V]) and a one-row KVBatch."""
        ...

    def decode(self, batch: KVBatch, tokens: torch.Tensor, adapters: Sequence[str | None]) -> torch.Tensor:
        """Feed one token per row ([B] int64), advance ``batch`` in place, return float32 logits [B, V]."""
        ...


class Backend(Protocol):
    name: str

    async def start(self) -> None:
        """Load and warm up; health turns SERVING after this returns."""
        ...

    async def close(self) -> None: ...

    def models(self) -> list[ModelInfo]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream events; closing the iterator (or cancelling its task) cancels the request."""
        ...

    def cancel(self, request_id: str) -> bool:
        """Stop an in-flight request by id (its stream ends with FinishReason.CANCELLED)."""
        ...
