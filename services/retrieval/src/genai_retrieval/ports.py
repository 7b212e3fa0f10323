"""What the retrieval domain needs from other services, in domain types.

``clients.py`` implements these over the embedding, inference and tokenizer services; tests give the
pipelines fakes. A failed call raises a ``genai_core.errors`` error that names the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from genai_retrieval.types import ChatEvent, ChatReply, ChatRequest, Embedded, EmbeddingModel, Reranked


class Embeddings(Protocol):
    """The embedding service: model facts, dense + sparse vectors, cross-encoder scores."""

    async def model(self, name: str) -> EmbeddingModel:
        """What the service says about model ``name``: its revision and sizes."""
        ...

    async def embed(
        self, model: str, texts: Sequence[str], *, dense: bool, sparse: bool, sparse_model: str = "",
        dimensions: int | None = None,
    ) -> Embedded:
        """One call's vectors of ``texts`` (the caller batches); ``dimensions`` truncates dense vectors."""
        ...

    async def rerank(self, model: str, query: str, passages: Sequence[str]) -> Reranked:
        """Cross-encoder scores of ``passages`` for ``query``."""
        ...


class Chat(Protocol):
    """The inference service's chat completions."""

    async def chat(self, request: ChatRequest) -> ChatReply: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """Text deltas, then a ``ChatDone``, or a ``Failure`` the service reported in its stream."""
        ...


class ContextPacker(Protocol):
    """The tokenizer service's context packing: which passages fit a prompt's token budget."""

    async def pack(
        self, tokenizer: str, token_budget: int, system_prompt: str, question: str, passages: Sequence[str]
    ) -> list[int]:
        """The indices of the passages that fit, in passage order."""
        ...
