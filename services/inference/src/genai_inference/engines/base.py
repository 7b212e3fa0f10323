"""The two shapes an engine can take.

* ``KVEngine``: a local model that runs one forward pass at a time over a ``KVBatch``; the
  shared continuous-batching scheduler drives it (torch, onnxruntime).
* ``Backend``: anything that turns a ``GenerationRequest`` into a stream of events itself
  (the scheduler wrapped around a KVEngine, llama.cpp, and the remote TGI/OpenAI engines).

Both declare LoRA adapters: an engine that cannot serve them says so with ``supports_adapters``
and raises FailedPrecondition from ``load_adapter``. Only type names come from torch here, so
importing this module (and the remote engines) does not load torch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from genai_core.errors import FailedPrecondition, NotFound

from genai_inference.types import Event, GenerationRequest, ModelInfo

if TYPE_CHECKING:
    import torch

    from genai_inference.kv import KVBatch


class Adapters(Protocol):
    """LoRA adapters by name; the caller (``generation.Inference``) checks names and paths first."""

    @property
    def supports_adapters(self) -> bool: ...

    @property
    def adapters(self) -> Mapping[str, Path]:
        """The loaded adapters: name -> directory."""
        ...

    def load_adapter(self, name: str, path: Path) -> None:
        """Load a PEFT LoRA directory under ``name`` (AlreadyExists, InvalidArgument, FailedPrecondition)."""
        ...

    def unload_adapter(self, name: str) -> None:
        """Forget ``name``; requests still using it end with FinishReason.ERROR (NotFound if unknown)."""
        ...


class KVEngine(Adapters, Protocol):
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


class Backend(Adapters, Protocol):
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


def adapters_unsupported(engine: str) -> FailedPrecondition:
    """What an engine without LoRA support raises from ``load_adapter``."""
    return FailedPrecondition(
        f"the {engine} engine cannot serve LoRA adapters; run the inference service with an engine that does "
        "(GENAI_INFERENCE_ENGINE=torch)", reason="ADAPTERS_UNSUPPORTED")


def adapter_not_loaded(name: str) -> NotFound:
    return NotFound(f"adapter '{name}' is not loaded", resource_type="adapter", resource_name=name)
