"""What the evaluation domain needs from outside, in domain types: the model under test (or a judge),
a retriever over collections, embeddings. ``clients`` implements them over the suite's services;
``endpoint`` implements ``LanguageModel`` over any OpenAI-compatible server; tests pass fakes.

Runs execute on worker threads with their own event loops, and gRPC channels belong to one loop, so the
service holds a ``BackendsFactory`` and each run opens (and closes) its own ``Backends``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from genai_evaluation.types import ModelRef, SearchMode, Usage


@dataclass(frozen=True)
class Scored:
    """The log-probabilities of the scored tokens of one sequence and whether each was the greedy choice."""

    logprobs: tuple[float, ...]
    greedy: bool
    usage: Usage = Usage()


@dataclass(frozen=True)
class Generated:
    texts: tuple[str, ...]
    usage: Usage = Usage()


@dataclass(frozen=True)
class GenerateParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What scoring needs to know about a model's tokenizer and context."""

    prefix_token_id: int  # conditions the first token of a text (BOS, else EOS), as lm-eval does
    max_length: int  # tokens per scored sequence


class LanguageModel(Protocol):
    """A model that can be scored and can generate."""

    async def check(self) -> None:
        """Raise ``NotFound`` (or ``Unavailable``) unless the model can be used."""
        ...

    async def info(self) -> ModelInfo: ...

    async def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        ...

    async def score(self, ids: Sequence[int], start: int, greedy: bool = False) -> Scored:
        """The log-probability of each of ``ids[start:]`` given the tokens before it (``start`` >= 1);
        with ``greedy``, also whether each was the most likely token (else ``Scored.greedy`` is False)."""
        ...

    async def generate(self, prompt: str, params: GenerateParams) -> Generated: ...

    async def chat_prompt(self, user_text: str) -> str:
        """``user_text`` as one user turn in the model's chat template, ready for the assistant's answer."""
        ...


@dataclass(frozen=True)
class Hit:
    id: str  # the chunk's id
    document_id: str
    text: str
    score: float


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


class Retriever(Protocol):
    async def document_count(self, tenant: str, collection: str) -> int | None:
        """How many documents the collection holds; None when it does not exist."""
        ...

    async def build(self, tenant: str, collection: str, documents: Sequence[CorpusDocument]) -> None:
        """Create the collection (dense and sparse vectors) and ingest the documents, one chunk each."""
        ...

    async def search(self, tenant: str, collection: str, query: str, mode: SearchMode, top_k: int,
                     rerank: bool = False) -> tuple[list[Hit], Usage]: ...


class Embeddings(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length dense vectors, one per text."""
        ...


class Backends(Protocol):
    """Everything one run talks to, opened on the run's own event loop."""

    def model(self, ref: ModelRef) -> LanguageModel: ...

    def retriever(self) -> Retriever: ...

    def embeddings(self) -> Embeddings: ...

    async def close(self) -> None: ...


BackendsFactory = Callable[[], Backends]
