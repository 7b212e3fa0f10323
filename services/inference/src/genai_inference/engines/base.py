"""The two shapes an engine can take.

* ``KVEngine``: a local model that runs one forward pass at a time over its own ``KVRows`` (the KV cache
  of the batch's rows, in whatever layout the engine wants); the shared continuous-batching scheduler
  drives it (torch, onnxruntime, onnxruntime-gguf). Logits cross this boundary as numpy float32.
* ``Backend``: anything that turns a ``GenerationRequest`` into a stream of events itself
  (the scheduler wrapped around a KVEngine, llama.cpp, and the remote TGI/OpenAI engines).

Both declare LoRA adapters: an engine that cannot serve them says so with ``supports_adapters``
and raises FailedPrecondition from ``load_adapter``. Nothing here imports torch, so importing this
module (and the remote engines) does not load it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from genai_core.errors import FailedPrecondition, NotFound

from genai_inference.types import Event, GenerationRequest, ModelInfo

if TYPE_CHECKING:
    import numpy as np


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


class KVRows(Protocol):
    """The KV cache of some rows (one per sequence). Rows join at token boundaries (``extend``) and leave
    or repeat (``select``); the scheduler keeps its own list of sequences in the same order."""

    @property
    def size(self) -> int: ...

    def extend(self, rows: KVRows) -> None:
        """Append ``rows`` (a prefill's) after the existing ones."""
        ...

    def select(self, rows: Sequence[int]) -> None:
        """Keep only ``rows``, in that order; a row may repeat, which clones it."""
        ...


class KVEngine(Adapters, Protocol):
    name: str
    info: ModelInfo
    eos_token_ids: frozenset[int]

    def new_batch(self) -> KVRows:
        """The (empty) batch the scheduler decodes; one per engine."""
        ...

    def prefill(self, ids: Sequence[int], *, past: KVRows | None = None, adapter: str | None = None,
                all_logits: bool = False) -> tuple[np.ndarray, KVRows]:
        """Run ``ids`` after ``past`` (a one-row KV from ``restore`` or an earlier prefill, which this
        consumes); return float32 logits ([len(ids), V] with all_logits, else [1, V]) and the one-row KV
        of past + ids."""
        ...

    def decode(self, batch: KVRows, tokens: np.ndarray, adapters: Sequence[str | None]) -> np.ndarray:
        """Feed one token per row ([B] int64), advance ``batch`` in place, return float32 logits [B, V]."""
        ...

    def snapshot(self, row: KVRows, start: int, end: int) -> KVPiece:
        """A copy of positions [start, end) of a one-row KV (for the prefix cache)."""
        ...

    def restore(self, pieces: Sequence[KVPiece], length: int) -> KVRows:
        """A one-row KV holding the first ``length`` positions of ``pieces`` laid end to end."""
        ...


class KVPiece(Protocol):
    """Positions of one row's KV cache, copied out by ``KVEngine.snapshot``."""

    @property
    def nbytes(self) -> int: ...


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
        "(GENAI_INFERENCE_ENGINE=onnxruntime-gguf or torch)", reason="ADAPTERS_UNSUPPORTED")


ADAPTER_UNLOADED = "ADAPTER_UNLOADED"  # the reason of an engine's FailedPrecondition when a row's adapter went away


def adapter_not_loaded(name: str) -> NotFound:
    return NotFound(f"adapter '{name}' is not loaded", resource_type="adapter", resource_name=name)
