"""Answer and AnswerStream over the REAL tokenizer and inference services (SmolLM2-135M, 32 new tokens at most)."""

from __future__ import annotations

import pytest
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_retrieval.grounding import citations
from genai_retrieval.types import Chunk, SearchResult, Span
from google.protobuf import struct_pb2

pytestmark = pytest.mark.slow

DOCS = [
    ("paris", "Paris is the capital of France. The Eiffel Tower stands in Paris."),
    ("berlin", "Berlin is the capital of Germany. The Brandenburg Gate is in Berlin."),
]
GEN = pb.GenerationOptions(max_new_tokens=24)


@pytest.fixture
async def answer_stack(make_stack, tokenizer_channel, inference_channel):
    async with make_stack("edge", channels={"tokenizer": tokenizer_channel, "inference": inference_channel}) as stack:
        stub = stack[0]
        await stub.CreateCollection(pb.CreateCollectionRequest(name="docs", sparse_enabled=True))
        await stub.IngestDocuments(pb.IngestDocumentsRequest(collection="docs", documents=[
            pb.DocumentInput(document_id=i, text=t, title=i.title(), metadata=struct_pb2.Struct()) for i, t in DOCS]))
        yield stub


async def test_answer_cites_the_contexts(answer_stack):
    reply = await answer_stack.Answer(pb.AnswerRequest(
        collection="docs", question="What is the capital of France?", generation=GEN,
        search=pb.SearchOptions(top_k=2)))
    assert reply.answer.strip()
    assert reply.contexts and reply.contexts[0].chunk.document_id == "paris"
    assert reply.citations and all(c.document_id in {"paris", "berlin"} for c in reply.citations)
    assert reply.usage.completion_tokens <= 24 and reply.usage.prompt_tokens > 0
    assert reply.retrieval_usage.prompt_tokens > 0 and reply.model


async def test_answer_budget_packs_fewer_contexts(answer_stack):
    small = pb.GenerationOptions(max_new_tokens=8, context_token_budget=40, system_prompt="Be brief.")
    reply = await answer_stack.Answer(pb.AnswerRequest(collection="docs", question="Capital of Germany?",
                                                       generation=small))
    assert len(reply.contexts) == 1 and reply.citations[0].document_id == reply.contexts[0].chunk.document_id


async def test_answer_stream(answer_stack):
    events = [e async for e in answer_stack.AnswerStream(pb.AnswerStreamRequest(
        collection="docs", question="Where is the Brandenburg Gate?", generation=GEN))]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "contexts" and kinds[-1] == "complete" and "delta" in kinds
    assert events[0].contexts.contexts[0].chunk.document_id == "berlin"
    assert events[-1].complete.citations


def test_citation_markers_map_to_contexts():
    contexts = [SearchResult(Chunk(f"c{i}", f"d{i}", 0, f"text {i}"), 1.0) for i in range(3)]
    cites = citations("Paris is the capital [2]. It has a tower [1][9].", contexts)
    assert [(c.document_id, c.context_index) for c in cites] == [("d1", 1), ("d0", 0)]
    assert cites[0].answer_span.start == 0 and cites[1].answer_span.start == 26
    after_stop = citations("Intro line.\nThe capital of Austria is Vienna. [1] Berlin is German.[3]", contexts)
    spans = [(c.answer_span.start, c.answer_span.end) for c in after_stop]
    text = "Intro line.\nThe capital of Austria is Vienna. [1] Berlin is German.[3]"
    assert [text[a:b] for a, b in spans] == ["The capital of Austria is Vienna. [1]", "Berlin is German.[3]"]
    fallback = citations("No markers here.", contexts)
    assert [(c.document_id, c.answer_span) for c in fallback] == [("d0", None)]
    assert cites[0].quote == "text 1" and cites[0].answer_span == Span(0, 24)
