"""genai_tokenizer.registry: lookup, loading, training through the registry, persistence, paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from genai_core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from genai_tokenizer.model import Kind, Source
from genai_tokenizer.registry import DEFAULT_TRAINED_MAX_LENGTH, TokenizerRegistry, TrainCorpus
from genai_tokenizer.sources import META_FILE
from genai_tokenizer.training import TrainSpec

BPE = TrainSpec(Kind.BPE, 400, ())
SENTENCE = "The quick brown fox, naïve café 東京!"


def _field(error) -> str:
    (violation,) = error.field_violations
    return violation.field


# -- lookup ---------------------------------------------------------------------------------------


def test_get_and_list_before_load_are_unavailable(settings):
    registry = TokenizerRegistry(settings)
    with pytest.raises(Unavailable):
        registry.get("all-minilm-l6-v2")
    with pytest.raises(Unavailable):
        registry.get()
    with pytest.raises(Unavailable):
        registry.list()


def test_get_default_and_by_id(registry):
    assert registry.default_id == "smollm2-135m-instruct"
    assert registry.get().id == "smollm2-135m-instruct"
    assert registry.get("").id == "smollm2-135m-instruct"
    assert registry.get("all-minilm-l6-v2").id == "all-minilm-l6-v2"


def test_unknown_tokenizer_is_not_found_and_lists_the_known_ones(registry):
    with pytest.raises(NotFound) as info:
        registry.get("no-such-tokenizer")
    error = info.value
    assert (error.resource_type, error.resource_name) == ("tokenizer", "no-such-tokenizer")
    assert "all-minilm-l6-v2" in error.message and "smollm2-135m-instruct" in error.message


def test_list_is_sorted_and_has_both_builtins(registry):
    ids = [t.id for t in registry.list()]
    assert ids == sorted(ids)
    assert {"all-minilm-l6-v2", "smollm2-135m-instruct"} <= set(ids)


def test_builtin_conversion_is_cached(registry, settings):
    converted = list((settings.cache_dir / "tokenizers").glob("smollm2-135m-instruct-*"))
    assert converted and all((d / META_FILE).exists() for d in converted)


def test_unknown_builtin_fails_the_load(make_registry):
    with pytest.raises(ValueError, match="unknown built-in"):
        make_registry(builtins=("nope",))


def test_default_must_be_loaded(make_registry):
    with pytest.raises(ValueError, match="default tokenizer"):
        make_registry(default_tokenizer="smollm2-135m-instruct")


# -- training through the registry ----------------------------------------------------------------


def test_train_registers_and_uses_the_new_tokenizer(make_registry, corpus):
    registry = make_registry()
    trained = registry.train("my-bpe", BPE, TrainCorpus(texts=tuple(corpus)))
    tok = registry.get("my-bpe")
    assert tok is trained.tokenizer
    assert trained.trained_chars == sum(map(len, corpus))
    info = tok.info
    assert info.source is Source.TRAINED and info.kind is Kind.BPE
    assert info.vocab_size <= 400
    assert info.max_length == DEFAULT_TRAINED_MAX_LENGTH
    assert info.create_time is not None and info.create_time.tzinfo is not None
    assert re.fullmatch(r"[0-9a-f]{64}", info.revision)
    assert tok.decode([tok.encode([SENTENCE])[0].ids]) == [SENTENCE]
    assert [t.id for t in registry.list()] == ["all-minilm-l6-v2", "my-bpe"]


def test_trained_tokenizer_persists_across_registries(make_registry, corpus, tmp_path):
    data_dir = tmp_path / "shared"
    first = make_registry(data_dir=data_dir)
    trained = first.train("persisted", TrainSpec(Kind.WORDPIECE, 300, ()), TrainCorpus(texts=tuple(corpus)), max_length=128)
    before = trained.tokenizer.info
    folder = data_dir / "tokenizers" / "persisted"
    assert (folder / META_FILE).exists()
    # Only the final folder is left behind: no temporary or old copies.
    assert sorted(p.name for p in (data_dir / "tokenizers").iterdir()) == ["persisted"]

    second = make_registry(data_dir=data_dir)
    after = second.get("persisted").info
    assert after.revision == before.revision
    assert after.create_time == before.create_time
    assert after.max_length == 128
    assert after.source is Source.TRAINED and after.kind is Kind.WORDPIECE
    assert after.vocab_size == before.vocab_size
    text = "quick brown fox"
    assert second.get("persisted").encode([text])[0].ids == trained.tokenizer.encode([text])[0].ids


def test_unreadable_trained_folder_is_skipped(make_registry, tmp_path, corpus):
    data_dir = tmp_path / "data"
    first = make_registry(data_dir=data_dir)
    first.train("good", BPE, TrainCorpus(texts=tuple(corpus)))
    broken = data_dir / "tokenizers" / "broken"
    broken.mkdir()
    (broken / META_FILE).write_text("{}")
    (broken / "tokenizer.json").write_text("not json")
    (data_dir / "tokenizers" / "no-meta").mkdir()  # without a meta file: not a tokenizer
    (data_dir / "tokenizers" / ".tmp-leftover").mkdir()

    second = make_registry(data_dir=data_dir)
    assert [t.id for t in second.list()] == ["all-minilm-l6-v2", "good"]


def test_existing_id_needs_overwrite(make_registry, corpus, tmp_path):
    data_dir = tmp_path / "data"
    registry = make_registry(data_dir=data_dir)
    first = registry.train("again", BPE, TrainCorpus(texts=tuple(corpus)))
    with pytest.raises(AlreadyExists) as info:
        registry.train("again", BPE, TrainCorpus(texts=tuple(corpus)))
    assert info.value.resource_name == "again" and "overwrite" in info.value.message
    assert registry.get("again") is first.tokenizer

    second = registry.train("again", TrainSpec(Kind.UNIGRAM, 300, ()), TrainCorpus(texts=tuple(corpus)), overwrite=True)
    assert registry.get("again") is second.tokenizer
    assert second.tokenizer.info.kind is Kind.UNIGRAM
    assert second.tokenizer.info.revision != first.tokenizer.info.revision
    assert sorted(p.name for p in (data_dir / "tokenizers").iterdir()) == ["again"]
    # The replacement is what a restart sees.
    assert make_registry(data_dir=data_dir).get("again").info.revision == second.tokenizer.info.revision


def test_persisted_id_needs_overwrite_after_restart(make_registry, corpus, tmp_path):
    data_dir = tmp_path / "data"
    make_registry(data_dir=data_dir).train("kept", BPE, TrainCorpus(texts=tuple(corpus)))
    with pytest.raises(AlreadyExists):
        make_registry(data_dir=data_dir).train("kept", BPE, TrainCorpus(texts=tuple(corpus)))


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "all-minilm-l6-v2"])
def test_builtin_ids_cannot_be_trained(make_registry, corpus, name):
    registry = make_registry()  # smollm2 is not even loaded here: the name is still reserved
    for overwrite in (False, True):
        with pytest.raises(AlreadyExists) as info:
            registry.train(name, BPE, TrainCorpus(texts=tuple(corpus)), overwrite=overwrite)
        assert "built-in" in info.value.message


@pytest.mark.parametrize("bad", ["", "-starts-with-dash", ".hidden", "../escape", "a/b", "x" * 65, "sp ace"])
def test_invalid_tokenizer_id(make_registry, corpus, bad):
    registry = make_registry()
    with pytest.raises(InvalidArgument) as info:
        registry.train(bad, BPE, TrainCorpus(texts=tuple(corpus)))
    assert _field(info.value) == "tokenizer_id"


def test_longest_valid_id(make_registry, corpus):
    name = "a" * 64
    assert make_registry().train(name, BPE, TrainCorpus(texts=tuple(corpus))).tokenizer.id == name


@pytest.mark.parametrize("corpus_arg", [TrainCorpus(), TrainCorpus(texts=("a",), paths=("b",))])
def test_corpus_needs_exactly_one_source(make_registry, corpus_arg):
    with pytest.raises(InvalidArgument) as info:
        make_registry().train("x", BPE, corpus_arg)
    assert _field(info.value) == "corpus"


def test_empty_inline_corpus(make_registry):
    registry = make_registry()
    with pytest.raises(InvalidArgument) as info:
        registry.train("empty", BPE, TrainCorpus(texts=("", "")))
    assert _field(info.value) == "corpus"
    with pytest.raises(NotFound):
        registry.get("empty")


def test_invalid_spec_is_rejected_before_anything_is_written(make_registry, corpus, tmp_path):
    registry = make_registry(data_dir=tmp_path / "data")
    with pytest.raises(InvalidArgument) as info:
        registry.train("small", TrainSpec(Kind.BPE, 10, ()), TrainCorpus(texts=tuple(corpus)))
    assert _field(info.value) == "vocab_size"
    assert list((tmp_path / "data" / "tokenizers").iterdir()) == []


def test_corpus_over_the_limit(make_registry, corpus, tmp_path):
    registry = make_registry(data_dir=tmp_path / "data", max_training_chars=1000)
    with pytest.raises(InvalidArgument) as info:
        registry.train("big", BPE, TrainCorpus(texts=tuple(corpus)))
    assert _field(info.value) == "corpus" and "1000" in info.value.message
    assert list((tmp_path / "data" / "tokenizers").iterdir()) == []


# -- corpus files ---------------------------------------------------------------------------------


def test_train_from_files(make_registry, corpus, tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "texts").mkdir(parents=True)
    (data_dir / "texts" / "a.txt").write_text("\n".join(corpus[:200]), encoding="utf-8")
    (data_dir / "texts" / "b.txt").write_text("\n".join(corpus[200:]), encoding="utf-8")
    registry = make_registry(data_dir=data_dir)
    trained = registry.train("from-files", BPE, TrainCorpus(paths=("texts/a.txt", "./texts/../texts/b.txt")))
    assert trained.trained_chars == len("\n".join(corpus[:200])) + len("\n".join(corpus[200:]))
    tok = registry.get("from-files")
    assert tok.decode([tok.encode([SENTENCE])[0].ids]) == [SENTENCE]


@pytest.fixture
def outside_file(tmp_path) -> Path:
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("not for training " * 50)
    return path


def test_paths_outside_the_data_dir_are_rejected(make_registry, tmp_path, outside_file):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "ok.txt").write_text("fine text " * 20)
    os.symlink(outside_file, data_dir / "link.txt")
    os.symlink(tmp_path / "outside", data_dir / "linkdir")
    registry = make_registry(data_dir=data_dir)
    cases = {
        "../outside/secret.txt": "outside the data directory",
        "/etc/passwd": "outside the data directory",
        str(outside_file): "outside the data directory",
        "link.txt": "outside the data directory",
        "linkdir/secret.txt": "outside the data directory",
        "missing.txt": "is not a file",
        ".": "is not a file",
    }
    for raw, why in cases.items():
        with pytest.raises(InvalidArgument) as info:
            registry.train("bad-path", BPE, TrainCorpus(paths=("ok.txt", raw)))
        assert _field(info.value) == "files.paths[1]", raw
        assert why in info.value.message, raw
    with pytest.raises(NotFound):
        registry.get("bad-path")


def test_session_corpus_file(registry, corpus_file, settings):
    """The shared corpus fixture sits inside the session data dir the servicer tests use."""
    assert (settings.data_dir / corpus_file).is_file()
    assert registry._corpus_paths((corpus_file,)) == [(settings.data_dir / corpus_file).resolve()]
