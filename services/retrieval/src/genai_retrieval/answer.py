"""RAG answers: search the collection, keep the best passages that fit the token budget, ask the answer
model with a grounded prompt (``grounding``), and cite the passages its ``[n]`` markers point to."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from genai_core import spans
from genai_core.errors import InvalidArgument

from genai_retrieval.grounding import DEFAULT_SYSTEM_PROMPT, citations, grounded_messages, numbered_sources
from genai_retrieval.ports import Chat, ContextPacker
from genai_retrieval.search import Searcher
from genai_retrieval.settings import RetrievalSettings
from genai_retrieval.types import (
    AnswerDone,
    Answered,
    AnswerEvent,
    ChatDone,
    ChatRequest,
    Failure,
    GenerationOptions,
    Grounded,
    SearchOptions,
    TextDelta,
)

DEFAULT_CONTEXTS = 5  # search top_k when the request does not set one


class Answerer:
    def __init__(self, searcher: Searcher, packer: ContextPacker, chat: Chat, settings: RetrievalSettings) -> None:
        self._searcher = searcher
        self._packer = packer
        self._chat = chat
        self._settings = settings

    async def answer(self, tenant: str, collection: str, question: str, search: SearchOptions,
                     generation: GenerationOptions) -> Answered:
        grounded, request = await self._ground(tenant, collection, question, search, generation)
        reply = await self._chat.chat(request)
        return Answered(reply.text, citations(reply.text, grounded.contexts), grounded.contexts,
                        grounded.retrieval_tokens, reply.usage, reply.model, reply.truncated)

    async def stream(self, tenant: str, collection: str, question: str, search: SearchOptions,
                     generation: GenerationOptions) -> AsyncIterator[AnswerEvent]:
        """``Grounded``, then ``TextDelta``s, then ``AnswerDone`` (or a ``Failure`` inference reported).

        A failure before ``Grounded`` is the request's; after it, the caller reports it in the stream.
        """
        grounded, request = await self._ground(tenant, collection, question, search, generation)
        yield grounded
        parts: list[str] = []
        async for event in self._chat.stream(request):
            match event:
                case TextDelta(text=text) if text:
                    parts.append(text)
                    yield event
                case Failure():
                    yield event
                    return
                case ChatDone(usage=usage, model=model, truncated=truncated):
                    yield AnswerDone(citations("".join(parts), grounded.contexts), usage, model, truncated)
                    return

    async def _ground(self, tenant: str, collection: str, question: str, search: SearchOptions,
                      generation: GenerationOptions) -> tuple[Grounded, ChatRequest]:
        """Search for ``question``, keep the passages that fit the context budget, and write the chat."""
        if not question.strip():  # the owner of this rule (the search would call it an empty "query")
            raise InvalidArgument.for_field("question", "the question is empty")
        s, g = self._settings, generation
        if search.top_k is None:
            search = dataclasses.replace(search, top_k=DEFAULT_CONTEXTS)
        with spans.start(spans.Operation.RETRIEVAL, collection, step="search"):  # annotated by the search itself
            found = await self._searcher.search(tenant, collection, question, search, "search")
        results = found.results
        system = g.system_prompt or DEFAULT_SYSTEM_PROMPT
        if results:
            budget = g.context_token_budget if g.context_token_budget is not None else s.context_token_budget
            kept = await self._packer.pack(s.answer_tokenizer, budget, system, question, numbered_sources(results))
            results = [results[i] for i in kept]
        request = ChatRequest(
            model=g.model or s.answer_model, messages=grounded_messages(question, results, system),
            max_new_tokens=g.max_new_tokens if g.max_new_tokens is not None else s.answer_max_new_tokens,
            temperature=g.temperature if g.temperature is not None else 0.0, top_p=g.top_p,
        )
        return Grounded(results, found.tokens), request
