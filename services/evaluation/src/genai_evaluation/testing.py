"""Scripted fakes of the evaluation service's ports for tests: a character-level language model, a retriever over an
in-memory corpus and bag-of-words embeddings. They count calls, so tests can check what was (not) redone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from genai_core.errors import NotFound

from genai_evaluation.ports import CorpusDocument, Generated, GenerateParams, Hit, ModelInfo, Scored
from genai_evaluation.types import ModelRef, SearchMode, Usage

PREFIX = 1


def char_logprob(previous: int, token: int) -> float:
    """A fixed, made-up distribution: tokens close to the previous one are likelier."""
    return -0.1 * (abs(token - previous) % 17) - 0.05


@dataclass
class FakeModel:
    """Tokens are characters (``ord``); a token's log-probability depends on the token before it."""

    name: str = "fake"
    answers: Callable[[str], str] = lambda prompt: " 42"
    delay: float = 0.0
    scored: list[tuple[int, ...]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    async def check(self) -> None:
        if self.name == "missing":
            raise NotFound("no model 'missing'", resource_type="model", resource_name="missing")

    async def info(self) -> ModelInfo:
        return ModelInfo(prefix_token_id=PREFIX, max_length=4096)

    async def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [[ord(c) for c in t] for t in texts]

    async def score(self, ids: Sequence[int], start: int, greedy: bool = False) -> Scored:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.scored.append(tuple(ids))
        values = tuple(char_logprob(ids[i - 1], ids[i]) for i in range(start, len(ids)))
        return Scored(values, greedy and all(abs(ids[i] - ids[i - 1]) % 17 == 0 for i in range(start, len(ids))),
                      Usage(len(ids), 0))

    async def generate(self, prompt: str, params: GenerateParams) -> Generated:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.prompts.append(prompt)
        return Generated(tuple(self.answers(prompt) for _ in range(params.n)), Usage(len(prompt), 3))

    async def chat_prompt(self, user_text: str) -> str:
        return f"<user>{user_text}</user><assistant>"


def score_text(context: str, continuation: str) -> float:
    """What FakeModel gives ``continuation`` after ``context`` (the sum of its characters' logprobs)."""
    ids = [ord(c) for c in context + continuation] if context else [PREFIX, *map(ord, continuation)]
    start = len(context) if context else 1
    return sum(char_logprob(ids[i - 1], ids[i]) for i in range(start, len(ids)))


@dataclass
class FakeRetriever:
    collections: dict[tuple[str, str], list[CorpusDocument]] = field(default_factory=dict)
    builds: int = 0

    async def document_count(self, tenant: str, collection: str) -> int | None:
        docs = self.collections.get((tenant, collection))
        return None if docs is None else len(docs)

    async def build(self, tenant: str, collection: str, documents: Sequence[CorpusDocument]) -> None:
        self.builds += 1
        self.collections[(tenant, collection)] = list(documents)

    async def search(self, tenant: str, collection: str, query: str, mode: SearchMode, top_k: int,
                     rerank: bool = False) -> tuple[list[Hit], Usage]:
        words = set(query.lower().split())
        docs = self.collections[(tenant, collection)]
        ranked = sorted(docs, key=lambda d: -len(words & set(d.text.lower().split())))
        return [Hit(f"{d.id}#0", d.id, d.text, 1.0 / (i + 1)) for i, d in enumerate(ranked[:top_k])], Usage(len(words), 0)


class FakeEmbeddings:
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for t in texts:
            v = [0.0] * 16
            for w in t.lower().split():
                v[hash(w) % 16] += 1.0
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / n for x in v])
        return out


@dataclass
class FakeBackends:
    models: dict[str, FakeModel] = field(default_factory=dict)
    retrieval: FakeRetriever = field(default_factory=FakeRetriever)
    closed: int = 0

    def model(self, ref: ModelRef) -> FakeModel:
        name = ref.name or "default"
        return self.models.setdefault(name, FakeModel(name))

    def retriever(self) -> FakeRetriever:
        return self.retrieval

    def embeddings(self) -> FakeEmbeddings:
        return FakeEmbeddings()

    async def close(self) -> None:
        self.closed += 1
