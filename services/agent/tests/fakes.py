"""Scripted fakes of the agent's ports: deterministic models, retrieval and tokenizer for graph tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genai_agent.types import (
    AnswerDone,
    ChatDelta,
    ChatDone,
    ChatRequest,
    Citation,
    SearchHit,
    ToolCall,
    Usage,
)

Reply = str | ToolCall | list[ToolCall] | dict[str, Any] | Callable[[ChatRequest], Any]


def call(name: str, **args: Any) -> ToolCall:
    """A tool call the scripted model makes."""
    call.count += 1
    return ToolCall(f"call_{call.count}", name, args)


call.count = 0


@dataclass
class ScriptedChat:
    """A chat backend that replies from a script, one item per call: text (streamed word by word), tool
    call(s), a dict (a JSON reply, for constrained calls) or a function of the request. When the script
    runs out it answers "done". ``delay`` slows every token (for cancel tests)."""

    script: list[Reply] = field(default_factory=list)
    delay: float = 0.0
    requests: list[ChatRequest] = field(default_factory=list)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta | ChatDone]:
        self.requests.append(request)
        item: Any = self.script.pop(0) if self.script else "done"
        if callable(item) and not isinstance(item, ToolCall):
            item = item(request)
        usage = Usage(10, 3)
        if isinstance(item, ToolCall | list):
            calls = tuple(item) if isinstance(item, list) else (item,)
            yield ChatDone(tool_calls=calls, usage=usage, finish_reason="tool_calls", model=request.model)
            return
        text = json.dumps(item) if isinstance(item, dict) else str(item)
        for i, word in enumerate(text.split(" ")):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield ChatDelta(("" if i == 0 else " ") + word)
        yield ChatDone(usage=usage, model=request.model)


@dataclass
class FakeRetrieval:
    """Search over a dict of tenant -> collection -> passages (word overlap scores); answers quote the top
    passage and cite it."""

    docs: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    searches: list[tuple[str, str, str]] = field(default_factory=list)

    async def search(self, tenant: str, collection: str, query: str, top_k: int) -> list[SearchHit]:
        from genai_core.errors import NotFound

        self.searches.append((tenant, collection, query))
        if collection not in self.docs.get(tenant, {}):
            raise NotFound(f"no collection {collection!r}", resource_type="collection", resource_name=collection)
        words = set(query.lower().split())
        hits = [SearchHit(doc, f"{doc}#0", text, len(words & set(text.lower().split())) / (len(words) or 1))
                for doc, text in self.docs[tenant][collection]]
        return sorted(hits, key=lambda h: -h.score)[:top_k]

    async def answer_stream(self, tenant: str, collection: str, question: str, top_k: int, model: str,
                            max_tokens: int) -> AsyncIterator[str | AnswerDone]:
        hits = await self.search(tenant, collection, question, top_k)
        top = hits[0] if hits else None
        for word in (f"From the sources: {top.text}" if top else "I do not know.").split(" "):
            yield word + " "
        citations = (Citation(top.document_id, top.chunk_id, 0, top.text),) if top else ()
        yield AnswerDone(citations, tuple(hits), Usage(20, 5), model or "fake")


@dataclass
class FakeTokens:
    async def count(self, texts: Sequence[str], tokenizer: str = "") -> list[int]:
        return [len(t.split()) for t in texts]
