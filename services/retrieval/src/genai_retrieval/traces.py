"""What a search and a RAG answer look like in a trace (``genai_core.spans``).

A search is a RETRIEVER span: collection, mode, top-k, the passages found (chunk ids and scores; their texts
and the query only when the operator turned content capture on), the embedding tokens it cost, and one child
span per stage (embed, dense, sparse, fuse, rerank, fetch), whose times are also the
``genai_stage_duration_seconds{pipeline="search"}`` histogram. A RAG answer is a CHAIN whose search step is
such a span and whose answer step is the inference service's LLM span; the question and the answer are its
input and output when captured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from genai_core import spans

from genai_retrieval.types import AnswerDone, AnswerEvent, SearchResult, TextDelta

PIPELINE = "search"


def document(result: SearchResult, with_text: bool) -> spans.Document:
    """A search result (chunk and score) as a traced document; text and metadata only ``with_text``."""
    chunk = result.chunk
    metadata = {"document_id": chunk.document_id, "title": chunk.title} if with_text else {}
    return spans.Document(chunk.chunk_id, result.score, chunk.text if with_text else None, metadata)


def retrieved(span: spans.GenAISpan, *, data_source: str, query: str, top_k: int, mode: str, rerank: bool,
              results: Sequence[SearchResult], tokens: int) -> None:
    """Annotate ``span`` (the current one: a Search call's, or an answer's search step) with one search."""
    span.request(top_k=top_k, data_source=data_source).query(query)
    # The embedding tokens are the embedding span's usage; as this span's, Phoenix would count them twice.
    span.attributes(**{"genai.retrieval.mode": mode, "genai.retrieval.rerank": rerank,
                       "genai.retrieval.embedding_tokens": tokens})
    span.documents([document(r, span.captures) for r in results])


async def answered(span: spans.GenAISpan, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
    """``events`` unchanged; the streamed answer becomes ``span``'s output when content is captured."""
    parts: list[str] = []
    async for event in events:
        if isinstance(event, TextDelta) and span.captures:
            parts.append(event.text)
        elif isinstance(event, AnswerDone):
            span.output_text("".join(parts))
        yield event
