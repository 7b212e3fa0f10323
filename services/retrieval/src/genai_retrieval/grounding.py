"""Grounded answers, the pure part: the prompt that asks for an answer from numbered sources, and the
citations read back from the ``[n]`` markers the model writes.

Functions over domain values only (no I/O, no protobuf), so any caller that has search results and a chat
model can ground an answer the same way:

    >>> from genai_retrieval.types import Chunk, SearchResult
    >>> contexts = [SearchResult(Chunk("c1", "paris", 0, "Paris is the capital of France."), 0.9)]
    >>> grounded_messages("What is the capital of France?", contexts)[1].content.splitlines()[1]
    '[1] Paris is the capital of France.'
    >>> [(c.document_id, c.answer_span) for c in citations("The capital is Paris [1].", contexts)]
    [('paris', Span(start=0, end=24))]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from genai_retrieval.types import ChatMessage, Citation, SearchResult, Span

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite the sources you use with their number in "
    "brackets, such as [1]. If the sources do not contain the answer, say that you do not know."
)
QUOTE_CHARS = 300  # a citation quotes the start of its chunk
_CITE = re.compile(r"\[(\d{1,3})\]")
_BOUNDARY = re.compile(r"[.!?]\s+|\n|\[\d{1,3}\]\s+")  # ends of sentences, lines and cited sentences
_TAIL = re.compile(r"(?:\s*\[\d{1,3}\])*\s*[.!?]?\s*$")  # markers, a full stop and spaces that end a text


def numbered_sources(contexts: Sequence[SearchResult]) -> list[str]:
    """``[n] Title: text`` for each context, numbered from 1 in order."""
    return [f"[{n}] {r.chunk.title + ': ' if r.chunk.title else ''}{r.chunk.text}" for n, r in enumerate(contexts, 1)]


def grounded_messages(question: str, contexts: Sequence[SearchResult],
                      system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[ChatMessage]:
    """The system and user messages that ask for an answer to ``question`` from ``contexts`` only."""
    sources = "\n\n".join(numbered_sources(contexts))
    user = f"Sources:\n{sources or '(none found)'}\n\nQuestion: {question}"
    return [ChatMessage("system", system_prompt), ChatMessage("user", user)]


def _sentence_start(answer: str, marker: int) -> int:
    """Where the sentence a marker at ``marker`` supports begins. Markers and the full stop right before it
    belong to that sentence: "Vienna is the capital. [1]" cites the whole sentence, not only "[1]"."""
    head = _TAIL.sub("", answer[:marker])
    return max((b.end() for b in _BOUNDARY.finditer(head)), default=0)


def citations(answer: str, contexts: Sequence[SearchResult]) -> list[Citation]:
    """The ``[n]`` markers in ``answer`` mapped to ``contexts`` (numbered from 1), once per context and
    sentence; markers past the end are ignored. No marker at all: the top context covers the whole answer."""
    out: list[Citation] = []
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
        out.append(Citation(c.document_id, c.chunk_id, n, c.text[:QUOTE_CHARS], Span(sentence_start, m.end())))
    if not out and contexts:
        c = contexts[0].chunk
        out.append(Citation(c.document_id, c.chunk_id, 0, c.text[:QUOTE_CHARS]))
    return out
