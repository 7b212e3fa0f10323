"""The shared bm25 analysis: stable ids, stop words, stems, and the query vector both services compute."""

from __future__ import annotations

from genai_sparse import bm25


def test_english_terms_are_stemmed_hashed_and_stop_worded():
    vector = bm25.text_vector("bm25-english", "The cats and the dogs are running")
    stems = {bm25.term_id(s) for s in ("cat", "dog", "run")}
    assert set(vector.indices) == stems and vector.indices == sorted(vector.indices)
    assert len(set(vector.values)) == 1  # each term once: every weight alike


def test_ids_are_stable_across_processes():
    assert bm25.term_id("capit") == bm25.term_id("capit") < bm25.HASH_SPACE


def test_a_model_that_needs_the_tokenizer_is_not_computed_here():
    assert bm25.text_vector("bm25-wordpiece", "hello") is None


def test_stop_words_only_is_an_empty_vector():
    assert bm25.text_vector("bm25-english", "the and of").indices == []
