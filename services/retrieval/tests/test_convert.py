"""convert: every API enum has a domain value, unknown numbers and unset oneofs are errors that name the
field, filters become payload filters, and domain values come back as the messages the API always sent."""

from __future__ import annotations

import pytest
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_core.errors import InvalidArgument
from genai_retrieval import convert
from genai_retrieval.types import (
    AnswerDone,
    Chunk,
    Citation,
    Distance,
    Failure,
    Filter,
    Fusion,
    Match,
    MatchAny,
    Range,
    SearchMode,
    SearchResult,
    Span,
    Splitter,
    StageScores,
    Usage,
)
from google.protobuf import struct_pb2, timestamp_pb2


@pytest.mark.parametrize(("table", "proto_enum", "domain_enum"), [
    (convert.DISTANCES, pb.Distance, Distance),
    (convert.SPLITTERS, pb.Splitter, Splitter),
    (convert.MODES, pb.SearchMode, SearchMode),
    (convert.FUSIONS, pb.Fusion, Fusion),
])
def test_every_api_enum_value_has_a_domain_value(table, proto_enum, domain_enum):
    assert set(table) == set(proto_enum.values())
    assert table[0] is None  # UNSPECIFIED: the domain picks the default
    assert {v for v in table.values() if v is not None} == set(domain_enum)


def _field_of(call) -> str:
    with pytest.raises(InvalidArgument) as err:
        call()
    return err.value.field_violations[0].field


def test_unknown_enum_numbers_name_the_field():
    assert _field_of(lambda: convert.search_options(pb.SearchOptions(mode=9), "search")) == "search.mode"
    assert _field_of(lambda: convert.search_options(pb.SearchOptions(fusion=7), "options")) == "options.fusion"
    assert _field_of(lambda: convert.collection_spec(pb.CreateCollectionRequest(
        name="x", vector_config=pb.VectorConfig(distance=42)))) == "vector_config.distance"
    assert _field_of(lambda: convert.chunking_options(pb.ChunkingOptions(splitter=9), "chunking")) == "chunking.splitter"


def test_options_keep_what_was_set_and_leave_the_rest_none():
    options = convert.search_options(pb.SearchOptions(top_k=0, mode=pb.SEARCH_MODE_SPARSE,
                                                      rerank=pb.RerankOptions(enabled=True)), "options")
    assert (options.top_k, options.mode, options.fusion, options.filter) == (0, SearchMode.SPARSE, None, None)
    assert options.score_threshold is None and options.candidate_count is None and options.rerank.enabled
    assert convert.generation_options(pb.GenerationOptions(temperature=0.0)).temperature == 0.0
    assert convert.generation_options(pb.GenerationOptions()).temperature is None
    chunking = convert.chunking_options(pb.ChunkingOptions(chunk_overlap_tokens=0), "chunking")
    assert (chunking.size, chunking.overlap, chunking.splitter) == (None, 0, None)


def test_document_content_oneof():
    meta = struct_pb2.Struct()
    meta.update({"year": 2020, "tags": ["a"]})
    text = convert.document_input(pb.DocumentInput(document_id="d", text="hi", metadata=meta))
    assert (text.text, text.data, text.metadata) == ("hi", None, {"year": 2020, "tags": ["a"]})
    data = convert.document_input(pb.DocumentInput(data=b"%PDF"))
    assert (data.text, data.data) == (None, b"%PDF")
    neither = convert.document_input(pb.DocumentInput(document_id="d"))
    assert (neither.text, neither.data) == (None, None)


def _cond(**kw) -> pb.Condition:
    return pb.Condition(**kw)


def test_filters_become_payload_filters():
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    f = pb.Filter(
        must=[_cond(field=pb.FieldCondition(key="author.name", equals=pb.Value(string_value="ann")))],
        should=[_cond(field=pb.FieldCondition(key="year", range=pb.Range(gte=2019))),
                _cond(document_ids=pb.DocumentIds(document_ids=["a", "b"]))],
        must_not=[_cond(filter=pb.Filter(must=[_cond(field=pb.FieldCondition(
            key="tag", any_of=pb.ValueList(integer_values=[1, 2])))])),
            _cond(field=pb.FieldCondition(key="at", timestamp_range=pb.TimestampRange(lt=ts)))],
    )
    assert convert.filter_(f) == Filter(
        must=(Match("metadata.author.name", "ann"),),
        should=(Range("metadata.year", gte=2019.0), MatchAny("document_id", ("a", "b"))),
        must_not=(Filter(must=(MatchAny("metadata.tag", (1, 2)),)),
                  Range("metadata.at", lt="2023-11-14T22:13:20.000000Z", datetime=True)),
    )


@pytest.mark.parametrize(("condition", "field"), [
    (_cond(), "filter.must[0]"),  # which oneof: convert
    (_cond(field=pb.FieldCondition(key="lang")), "filter.must[0].field"),
    (_cond(field=pb.FieldCondition(key="lang", equals=pb.Value())), "filter.must[0].field.equals"),
    (_cond(field=pb.FieldCondition(key="", equals=pb.Value(bool_value=True))), "filter.must[0].field.key"),  # filters
    (_cond(field=pb.FieldCondition(key="a..b", equals=pb.Value(bool_value=True))), "filter.must[0].field.key"),
    (_cond(field=pb.FieldCondition(key="a", any_of=pb.ValueList())), "filter.must[0].field.any_of"),
    (_cond(field=pb.FieldCondition(key="a", any_of=pb.ValueList(string_values=["x"], integer_values=[1]))),
     "filter.must[0].field.any_of"),
    (_cond(field=pb.FieldCondition(key="a", range=pb.Range())), "filter.must[0].field.range"),
    (_cond(field=pb.FieldCondition(key="a", timestamp_range=pb.TimestampRange())),
     "filter.must[0].field.timestamp_range"),
    (_cond(document_ids=pb.DocumentIds()), "filter.must[0].document_ids"),
])
def test_a_bad_condition_names_its_path(condition, field):
    assert _field_of(lambda: convert.filter_(pb.Filter(must=[condition]))) == field


def test_delete_selector_is_the_oneof_that_is_set():
    by_ids = pb.DeleteDocumentsRequest(document_ids=pb.DocumentIds(document_ids=["a"]))
    assert convert.delete_selector(by_ids) == (["a"], None)
    assert convert.delete_selector(pb.DeleteDocumentsRequest(document_ids=pb.DocumentIds())) == ([], None)
    assert convert.delete_selector(pb.DeleteDocumentsRequest(filter=pb.Filter())) == (None, Filter())
    assert convert.delete_selector(pb.DeleteDocumentsRequest()) == (None, None)


def test_results_and_citations_out():
    chunk = Chunk("c1", "d1", 2, "text", 3, Span(4, 8), None, {"n": 1}, "T", "s3://x")
    result = convert.search_result(SearchResult(chunk, 0.5, StageScores(sparse=7.0, fused=0.5)))
    assert not result.chunk.HasField("page_number") and result.chunk.metadata["n"] == 1
    assert result.chunk.span.end == 8 and result.chunk.title == "T" and result.score == 0.5
    scores = result.stage_scores
    assert [scores.HasField(s) for s in ("dense", "sparse", "fused", "rerank")] == [False, True, True, False]
    with_page = convert.chunk(Chunk("c", "d", 0, "x", page_number=1))
    assert with_page.HasField("page_number") and with_page.page_number == 1
    spanned, whole = convert.citations([Citation("d1", "c1", 0, "q", Span(0, 5)), Citation("d1", "c1", 0, "q")])
    assert spanned.answer_span.end == 5 and not whole.HasField("answer_span")


def test_usage_and_stream_failures_pass_through_as_reported():
    done = AnswerDone([], Usage(prompt_tokens=10, completion_tokens=2, total_tokens=13, cached_prompt_tokens=4),
                      "m", True)
    kind, message = convert._answer_event(done, 0.0)
    assert kind == "complete" and message.usage.total_tokens == 13 and message.usage.cached_prompt_tokens == 4
    assert message.truncated and message.timings.HasField("total_duration")
    kind, detail = convert._answer_event(Failure("INTERNAL", "ENGINE_FAILED", "the engine stopped"), 0.0)
    assert (kind, detail.code, detail.reason, detail.message) == ("error", "INTERNAL", "ENGINE_FAILED",
                                                                 "the engine stopped")
