"""What the fine-tune domain needs from other services, in its own terms."""

from __future__ import annotations

from typing import Protocol

from genai_finetune.types import Artifact, TokenizerFiles


class ModelServer(Protocol):
    """The inference service, as the artifact registry uses it."""

    async def load_adapter(self, artifact: Artifact) -> None:
        """Serve a LoRA adapter beside its base model, as ``artifact.model_id``."""
        ...

    async def load_model(self, artifact: Artifact) -> None:
        """Serve full weights, or a prompt/prefix-tuning adapter, as a model of its own (``artifact.model_id``)."""
        ...

    async def unload_adapter(self, model_id: str) -> None:
        """Stop serving an adapter; NotFound when it is not loaded."""
        ...

    async def unload_model(self, model_id: str) -> None:
        """Stop serving a model; NotFound when it is not loaded."""
        ...

    async def load_encoder(self, artifact: Artifact) -> None:
        """Serve an encoder or a cross-encoder by the embedding service, as ``artifact.model_id``."""
        ...

    async def unload_encoder(self, model_id: str) -> None:
        """Stop serving an encoder or cross-encoder; NotFound when it is not loaded."""
        ...

    async def served(self) -> set[str]:
        """The ids of every model and adapter served now."""
        ...


class TokenizerSource(Protocol):
    """The tokenizer service, as models trained from scratch use it (called from worker threads)."""

    def files(self, tokenizer_id: str) -> TokenizerFiles:
        """The tokenizer's files; NotFound when the tokenizer service has no such tokenizer."""
        ...
