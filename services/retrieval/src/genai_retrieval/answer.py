"""RAG answers: search the collection, pack the best passages into the token budget, ask the answer model,
and map the ``[n]`` markers it writes back to the passages as citations.

    >>> contexts = [pb.SearchResult(chunk=pb.Chunk(chunk_id="c1", document_id="paris", text="Paris is ..."))]
    >>> [c.document_id for c in citations("The capital is Paris [1].", contexts)]
    ['paris']
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genai.inference.v1 import inference_service_pb2 as ipb
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2 as tpb
from genai.type.v1 import usage_pb2
from genai_core import spans
from genai_core.errors import InvalidArgument

if TYPE_CHECKING:
    from genai_retrieval.service import Retrieval

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite the sources you use with their number in "
    "brackets, such as [1]. If the sources do not contain the answer, say that you do not know."
)
DEFAULT_CONTEXTS = 5  # search top_k when the request does not set one
QUOTE_CHARS = 300
_CITE = re.compile(r"\[(\d{1,3})\]")
_BOUNDARY = re.compile(r"[.!?]\s+|\n|\[\d{1,3}\]\s+")  # ends of sentences, lines and cited sentences
_TAIL = re.compile(r"(?:\s*\[\d{1,3}\])*\s*[.!?]?\s*$")  # markers, a full stop and spaces that end a text


@dataclass
class Grounding:
    """The passages the answer may use, what retrieving them cost, and the chat that asks for the answer."""

    contexts: list[pb.SearchResult]
    retrieval_tokens: int
    chat: ipb.ChatRequest


@dataclass
class Completed:
    citations: list[pb.Citation]
    usage: usage_pb2.Usage
    model: str
    truncated: bool


@dataclass
class Answered:
    answer: str
    citations: list[pb.Citation]
    contexts: list[pb.SearchResult]
    retrieval_tokens: int
    usage: usage_pb2.Usage
    model: str
    truncated: bool


def check_question(question: str) -> None:
    if not question.strip():
        raise InvalidArgument.for_field("question", "the question is empty")


def _source(n: int, result: pb.SearchResult) -> str:
    return f"[{n}] {result.chunk.title + ': ' if result.chunk.title else ''}{result.chunk.text}"


async def ground(r: Retrieval, tenant: str, collection: str, question: str, search: pb.SearchOptions,
                 generation: pb.GenerationOptions) -> Grounding:
    """Search for ``question``, keep the passages that fit the context budget, and write the chat."""
    check_question(question)
    options = pb.SearchOptions()
    options.CopyFrom(search)
    if not options.HasField("top_k"):
        options.top_k = DEFAULT_CONTEXTS
    with spans.start(spans.Operation.RETRIEVAL, collection, step="search"):  # annotated by the search itself
        found = await r.search(tenant, collection, question, options, "search")
    results = found.results
    g = generation
    system = g.system_prompt or DEFAULT_SYSTEM_PROMPT
    max_new = g.max_new_tokens if g.HasField("max_new_tokens") else r.settings.answer_max_new_tokens
    budget = g.context_token_budget if g.HasField("context_token_budget") else r.settings.context_token_budget
    selected = list(range(len(results)))
    if results:
        packed = await r.downstream.tokenizer.PackContext(tpb.PackContextRequest(
            tokenizer=r.settings.answer_tokenizer, token_budget=budget, system_prompt=system, question=question,
            chunks=[_source(i + 1, res) for i, res in enumerate(results)]))
        selected = sorted(packed.selected_indices)
    contexts = [results[i] for i in selected]
    sources = "\n\n".join(_source(n + 1, c) for n, c in enumerate(contexts))
    user = f"Sources:\n{sources or '(none found)'}\n\nQuestion: {question}"
    sampling = ipb.SamplingParams(max_new_tokens=max_new,
                                  temperature=g.temperature if g.HasField("temperature") else 0.0)
    if g.HasField("top_p"):
        sampling.top_p = g.top_p
    chat = ipb.ChatRequest(
        model=g.model or r.settings.answer_model, sampling=sampling,
        messages=[ipb.ChatMessage(role="system", content=system), ipb.ChatMessage(role="user", content=user)],
    )
    return Grounding(contexts, found.tokens, chat)


def _sentence_start(answer: str, marker: int) -> int:
    """Where the sentence a marker at ``marker`` supports begins. Markers and the full stop right before it
    belong to that sentence: "Vienna is the capital. [1]" cites the whole sentence, not only "[1]"."""
    head = _TAIL.sub("", answer[:marker])
    return max((b.end() for b in _BOUNDARY.finditer(head)), default=0)


def citations(answer: str, contexts: Sequence[pb.SearchResult]) -> list[pb.Citation]:
    """The [n] markers the model wrote, mapped to contexts; none: the top context covers the answer."""
    out: list[pb.Citation] = []
    seen: set[tuple[int, int]] = set()
    for m in _CITE.finditer(answer):
        n = int(m.group(1)) - 1
        if not 0 <= n < len(contexts):
            continue
        sentence_start = _sentence_start(answer, m.start())
        if (n, sentence_start) in seen:
            continue
        seen.add((n, sentence_start))
        c = contexts[n].chunk
        out.append(pb.Citation(document_id=c.document_id, chunk_id=c.chunk_id, context_index=n,
                               answer_span=pb.TextSpan(start=sentence_start, end=m.end()), quote=c.text[:QUOTE_CHARS]))
    if not out and contexts:
        c = contexts[0].chunk
        out.append(pb.Citation(document_id=c.document_id, chunk_id=c.chunk_id, context_index=0,
                               quote=c.text[:QUOTE_CHARS]))
    return out


async def answer(r: Retrieval, tenant: str, collection: str, question: str, search: pb.SearchOptions,
                 generation: pb.GenerationOptions) -> Answered:
    grounding = await ground(r, tenant, collection, question, search, generation)
    reply = await r.downstream.inference.Chat(grounding.chat)
    choice = reply.choices[0] if reply.choices else ipb.ChatChoice()
    text = choice.message.content
    return Answered(text, citations(text, grounding.contexts), grounding.contexts, grounding.retrieval_tokens,
                    reply.usage, reply.model, choice.finish_reason == ipb.FINISH_REASON_LENGTH)


async def answer_stream(r: Retrieval, tenant: str, collection: str, question: str, search: pb.SearchOptions,
                        generation: pb.GenerationOptions) -> AsyncIterator[tuple[str, Any]]:
    """Yields ("contexts", Grounding), ("delta", text)s, then ("complete", Completed) or ("error", ErrorDetail).

    A failure before "contexts" is the request's; after it, the caller reports it in the stream.
    """
    grounding = await ground(r, tenant, collection, question, search, generation)
    yield "contexts", grounding
    parts: list[str] = []
    async for event in r.downstream.inference.ChatStream(grounding.chat):
        kind = event.WhichOneof("event")
        if kind == "delta" and event.delta.content:
            parts.append(event.delta.content)
            yield "delta", event.delta.content
        elif kind == "error":
            yield "error", event.error
            return
        elif kind == "complete":
            c = event.complete
            finish = c.choices[0].finish_reason if c.choices else ipb.FINISH_REASON_STOP
            yield "complete", Completed(citations("".join(parts), grounding.contexts), c.usage, c.model,
                                        finish == ipb.FINISH_REASON_LENGTH)
            return
