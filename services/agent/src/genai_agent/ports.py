"""What the agent's domain needs from other services, in domain types; ``clients.py`` implements these
over gRPC and the tests over scripted fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from genai_agent.types import AnswerDone, ChatDelta, ChatDone, ChatRequest, SearchHit


class ChatBackend(Protocol):
    """A chat model service: the inference service's ChatStream."""

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta | ChatDone]:
        """Content deltas as they are generated, then exactly one ``ChatDone``."""
        ...


class Retrieval(Protocol):
    """The retrieval service: tenant-scoped search and cited answers."""

    async def search(self, tenant: str, collection: str, query: str, top_k: int) -> list[SearchHit]:
        ...

    def answer_stream(
        self, tenant: str, collection: str, question: str, top_k: int, model: str, max_tokens: int
    ) -> AsyncIterator[str | AnswerDone]:
        """Answer text deltas, then exactly one ``AnswerDone`` with the citations."""
        ...


class Tokens(Protocol):
    """The tokenizer service."""

    async def count(self, texts: Sequence[str], tokenizer: str = "") -> list[int]:
        ...
