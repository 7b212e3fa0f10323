"""genai_tokenizer.training: one recipe per algorithm, trained on a small deterministic corpus."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_tokenizer.model import Kind, Limits, Source, Tokenizer
from genai_tokenizer.training import MAX_VOCAB, MIN_VOCAB, RECIPES, TrainSpec, read_files, train, validate

SENTENCE = "The quick brown fox jumps over the lazy dog."
UNSEEN = "Zebra 🦓 juggles ĳ 42 ∑ q̃ — and 漢字!"


def _train(corpus, kind: Kind, vocab: int = 500, **kw):
    kw.setdefault("special_tokens", ())
    return train(TrainSpec(kind, vocab, **kw), lambda: iter(corpus), max_length=256)


def _wrap(result) -> Tokenizer:
    return Tokenizer("t", result.tokenizer, source=Source.TRAINED, max_length=256, revision="r", limits=Limits(8, 1000))


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_trains_within_the_vocab_size(corpus, kind):
    result = _train(corpus, kind, vocab=500)
    hf = result.tokenizer
    assert 0 < len(hf) <= 500
    assert result.trained_chars == sum(len(line) for line in corpus)
    assert result.seconds >= 0
    assert hf.model_max_length == 256
    assert _wrap(result).info.kind is kind
    ids = hf.backend_tokenizer.encode(SENTENCE).ids
    assert ids and max(ids) < len(hf)


def test_bpe_round_trips_exactly_even_unseen_text(corpus):
    tok = _wrap(_train(corpus, Kind.BPE))
    for text in (SENTENCE, UNSEEN, "  two  spaces\tand a tab\n"):
        ids = tok.encode([text])[0].ids
        assert tok.decode([ids]) == [text]
    assert tok.info.vocab_size >= 256  # the byte alphabet is always there, so nothing is unknown


def test_bpe_learns_merges_from_the_corpus(corpus):
    tok = _wrap(_train(corpus, Kind.BPE))
    assert tok.encode([" the"], return_tokens=True)[0].tokens == ["Ġthe"]  # a frequent word is one token
    assert len(tok.encode(["tokenizer"])[0].ids) <= 3  # merges, not 9 single bytes
    assert len(tok.encode(["xqzjv"])[0].ids) == 5  # never-seen letters stay bytes


def test_bpe_default_specials_and_roles(corpus):
    result = _train(corpus, Kind.BPE)
    hf = result.tokenizer
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|pad|>"
    assert hf.convert_tokens_to_ids("<|endoftext|>") == 0  # specials come first


def test_wordpiece_adds_cls_and_sep(corpus):
    tok = _wrap(_train(corpus, Kind.WORDPIECE))
    (enc,) = tok.encode(["quick brown fox"], return_tokens=True)
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert enc.tokens[1:-1] == ["quick", "brown", "fox"]
    assert enc.special_flags == [True, False, False, False, True]
    (plain,) = tok.encode(["quick brown fox"], add_special_tokens=False, return_tokens=True)
    assert plain.tokens == ["quick", "brown", "fox"]
    assert tok.decode([enc.ids], skip_special_tokens=True) == ["quick brown fox"]
    roles = {s.role: s.content for s in tok.info.special_tokens}
    assert roles["cls"] == "[CLS]" and roles["sep"] == "[SEP]" and roles["unk"] == "[UNK]"


def test_wordpiece_lowercase(corpus):
    tok = _wrap(_train(corpus, Kind.WORDPIECE, lowercase=True))
    assert tok.encode(["QUICK Fox"], add_special_tokens=False, return_tokens=True)[0].tokens == ["quick", "fox"]
    cased = _wrap(_train(corpus, Kind.WORDPIECE))
    assert cased.encode(["quick"], add_special_tokens=False, return_tokens=True)[0].tokens == ["quick"]
    assert cased.encode(["QUICK"], add_special_tokens=False, return_tokens=True)[0].tokens != ["quick"]


def test_wordpiece_without_cls_sep_adds_no_template(corpus):
    tok = _wrap(_train(corpus, Kind.WORDPIECE, special_tokens=("[PAD]",)))
    (enc,) = tok.encode(["quick fox"], return_tokens=True)
    assert enc.tokens == ["quick", "fox"]
    # [UNK] is required by the recipe and is put first even when not asked for.
    assert tok.hf.convert_tokens_to_ids("[UNK]") == 0
    assert tok.hf.convert_tokens_to_ids("[PAD]") == 1


def test_unigram_round_trips_known_words(corpus):
    tok = _wrap(_train(corpus, Kind.UNIGRAM))
    text = "the quick brown fox jumps over the lazy dog"
    ids = tok.encode([text])[0].ids
    assert tok.decode([ids], skip_special_tokens=True) == [text]
    assert tok.hf.unk_token == "<unk>" and tok.hf.bos_token == "<s>" and tok.hf.eos_token == "</s>"


def test_custom_special_tokens_keep_their_order_and_roles(corpus):
    result = _train(corpus, Kind.BPE, special_tokens=("<s>", "</s>", "<|user|>", "<|assistant|>"))
    hf = result.tokenizer
    assert [hf.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<|user|>", "<|assistant|>")] == [0, 1, 2, 3]
    assert hf.bos_token == "<s>" and hf.eos_token == "</s>"
    assert {"<|user|>", "<|assistant|>"} <= set(hf.all_special_tokens)
    tok = _wrap(result)
    (enc,) = tok.encode(["<|user|> hi"], return_tokens=True)
    assert enc.tokens[0] == "<|user|>" and enc.special_flags[0] is True
    roles = {s.content: s.role for s in tok.info.special_tokens}
    assert roles["<|user|>"] == "additional" and roles["<s>"] == "bos"


def test_every_kind_has_a_recipe():
    assert set(RECIPES) == set(Kind)


@pytest.mark.parametrize("vocab", [0, MIN_VOCAB - 1, MAX_VOCAB + 1])
def test_invalid_vocab_size(corpus, vocab):
    with pytest.raises(InvalidArgument) as info:
        _train(corpus, Kind.BPE, vocab=vocab)
    assert [v.field for v in info.value.field_violations] == ["vocab_size"]


def test_vocab_size_bounds_are_inclusive():
    validate(TrainSpec(Kind.BPE, MIN_VOCAB, ()))
    validate(TrainSpec(Kind.BPE, MAX_VOCAB, ()))


def test_invalid_min_frequency():
    with pytest.raises(InvalidArgument) as info:
        validate(TrainSpec(Kind.BPE, 500, (), min_frequency=0))
    assert [v.field for v in info.value.field_violations] == ["min_frequency"]


@pytest.mark.parametrize("bad", ["", " <s>", "<s> "])
def test_invalid_special_token(bad):
    with pytest.raises(InvalidArgument) as info:
        validate(TrainSpec(Kind.BPE, 500, ("<ok>", bad)))
    assert [v.field for v in info.value.field_violations] == ["special_tokens[1]"]


@pytest.mark.parametrize("corpus", [[], [""], ["", ""]])
def test_empty_corpus(corpus):
    with pytest.raises(InvalidArgument) as info:
        _train(corpus, Kind.BPE)
    assert [v.field for v in info.value.field_violations] == ["corpus"]


def test_the_corpus_is_read_once():
    calls = []

    def corpus():
        calls.append(1)
        return iter(["some text to train on"] * 10)

    train(TrainSpec(Kind.BPE, 300, ()), corpus, max_length=64)
    assert calls == [1]


def test_read_files_streams_bounded_pieces(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("0123456789abcdefghij-xyz", encoding="utf-8")
    b.write_bytes("ok \xff".encode("latin-1"))  # not UTF-8: replaced, not fatal
    pieces = list(read_files([a, b], chunk_chars=10))
    assert all(len(p) <= 10 for p in pieces)
    assert pieces[:3] == ["0123456789", "abcdefghij", "-xyz"]
    assert pieces[3] == "ok \ufffd"
