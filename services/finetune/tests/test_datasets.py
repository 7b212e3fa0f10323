"""Datasets: line-by-line validation with errors that name the line and field, content-addressed storage,
token counts, deletion rules."""

from __future__ import annotations

import pytest
from genai_core.errors import FailedPrecondition, InvalidArgument, NotFound
from genai_finetune.records import parse
from genai_finetune.testing import FACTS, PREFERENCES, chat, jsonl
from genai_finetune.tokenization import IGNORE, encode_chat
from genai_finetune.types import DatasetFormat, JobState


def _violations(exc: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in exc.field_violations}


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"messages": [{"role": "bot", "content": "hi"}]}', "line[1].messages[0].role", "unknown role 'bot'"),
        ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}',
         "line[1].messages[0].content", "empty"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "line[1].messages", "no assistant message"),
        ('{"messages": "hi"}', "line[1].messages", "non-empty list"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]}',
         "line[1].messages[1].weight", "0 or 1"),
        ("{not json", "line[1]", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "line[1]", "too deeply"),  # was a RecursionError: INTERNAL
        ('{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}', "line[1]",
         "surrogate"),  # a lone surrogate escape used to reach the tokenizer
        ("[1, 2]", "line[1]", "JSON object"),
        ('{"foo": 1}', "line[1]", "none of 'messages'"),
        ('{"prompt": "a", "completion": ""}', "line[1].completion", "empty"),
        ('{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": "yes", '
         '"non_preferred_output": [{"role": "assistant", "content": "no"}]}', "line[1].preferred_output",
         "exactly one assistant message"),
        ('{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": "assistant", '
         '"content": "same"}], "non_preferred_output": [{"role": "assistant", "content": "same"}]}',
         "line[1].non_preferred_output", "the same"),
    ],
)
def test_a_bad_line_names_the_line_and_the_field(line, field, words):
    with pytest.raises(InvalidArgument) as info:
        parse(line.encode() + b"\n", "train.jsonl")
    assert field in _violations(info.value)
    assert words in _violations(info.value)[field]


def test_every_bad_line_is_reported_with_its_number():
    good = jsonl([chat("q", "a")]).decode()
    content = "\n".join([good, '{"messages": [{"role": "x", "content": "y"}]}', "", good, "{oops"]).encode()
    with pytest.raises(InvalidArgument) as info:
        parse(content, "train.jsonl")
    assert list(_violations(info.value)) == ["line[2].messages[0].role", "line[5]"]
    assert info.value.message.startswith("line 2, messages[0].role: unknown role")
    assert "1 more problem" in info.value.message


def test_formats_are_detected_and_normalized():
    fmt, records = parse(jsonl(PREFERENCES[:2]), "p.jsonl")
    assert fmt is DatasetFormat.PREFERENCE
    assert records[0]["chosen"] == "Yes! 0 is wonderful." and records[0]["messages"][0]["role"] == "user"
    assert parse(jsonl([{"prompt": "2+2=", "completion": "4"}]), "c.jsonl")[0] is DatasetFormat.COMPLETION
    fmt, records = parse(b"First document,\nstill first.\n\n\nSecond document.\n", "corpus.txt")
    assert fmt is DatasetFormat.TEXT and [r["text"] for r in records] == ["First document,\nstill first.",
                                                                          "Second document."]
    assert [r["_line"] for r in records] == [1, 5]
    with pytest.raises(InvalidArgument):  # declared chat, but the lines are completions
        parse(jsonl([{"prompt": "a", "completion": "b"}]), "c.jsonl", DatasetFormat.CHAT)


def test_chat_labels_cover_only_the_assistant_replies(tiny_dir, tokenizers):
    tokenizer = tokenizers.get(tiny_dir)
    messages = [{"role": "user", "content": "Who is the mascot?"}, {"role": "assistant", "content": "Zorblax."},
                {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Still Zorblax!", "weight": 0},
                {"role": "user", "content": "Last?"}, {"role": "assistant", "content": "Zorblax forever."}]
    encoded = encode_chat(tokenizer, messages)
    learned = tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE])
    assert learned == "Zorblax.<|im_end|>\nZorblax forever.<|im_end|>\n"  # not the weight-0 reply, not the user
    assert len(encoded) == len(tokenizer(tokenizer.apply_chat_template(
        [{k: v for k, v in m.items() if k != "weight"} for m in messages], tokenize=False),
        add_special_tokens=False).input_ids)


def test_upload_is_stored_once_and_counted(datasets, data_dir):
    first = datasets.create(filename="facts.jsonl", purpose="fine-tune", content=jsonl(FACTS))
    second = datasets.create(filename="same.jsonl", purpose="fine-tune", content=jsonl(FACTS))
    assert first.id != second.id and first.sha256 == second.sha256
    assert first.format is DatasetFormat.CHAT and first.record_count == len(FACTS) and first.token_count > 100
    assert len(list((data_dir / "files").rglob("*"))) == 2  # one directory, one file
    assert datasets.content(first.id) == jsonl(FACTS)
    datasets.delete(first.id)
    assert datasets.content(second.id) == jsonl(FACTS)  # still there: the other dataset uses it
    datasets.delete(second.id)
    assert not [p for p in (data_dir / "files").rglob("*") if p.is_file()]
    with pytest.raises(NotFound):
        datasets.get(second.id)


def test_limits_and_sources(datasets, data_dir):
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="big.jsonl", purpose="fine-tune", content=b" " * 1_000_001)
    assert info.value.reason == "DATASET_TOO_LARGE" and "1000000" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="many.jsonl", purpose="fine-tune", content=jsonl([chat("q", "a")] * 1001))
    assert info.value.reason == "DATASET_TOO_LARGE"
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="x.jsonl", purpose="batch", content=jsonl(FACTS))
    assert _violations(info.value) == {"purpose": "use one of fine-tune, fine-tune-results, not 'batch'"}
    (data_dir / "imports").mkdir(parents=True)
    (data_dir / "imports" / "facts.jsonl").write_bytes(jsonl(FACTS))
    imported = datasets.create(filename="", purpose="fine-tune", file_path="facts.jsonl")
    assert imported.filename == "facts.jsonl" and imported.record_count == len(FACTS)
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="", purpose="fine-tune", file_path="../finetune.db")
    assert "outside the import directory" in info.value.message


def test_a_dataset_an_unfinished_job_uses_cannot_be_deleted(datasets, jobs, upload):
    dataset = upload(FACTS)
    from genai_finetune.jobs import JobRequest

    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id))
    with pytest.raises(FailedPrecondition) as info:
        datasets.delete(dataset.id)
    assert job.id in info.value.message
    jobs.cancel(job.id)
    assert jobs.get(job.id).state is JobState.CANCELLED
    assert datasets.delete(dataset.id).id == dataset.id
