"""genai_tokenizer.packing.pack: greedy/prefix selection and the budget arithmetic."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_tokenizer.packing import SEPARATOR, Strategy, pack

SYSTEM = "You answer questions about tokenizers using the context."
QUESTION = "What does a tokenizer do?"
SMALL_A = "A tokenizer splits text into tokens."
HUGE = " ".join(["Byte pair encoding merges frequent pairs of symbols."] * 20)
SMALL_B = "Each token has an id in the vocabulary."


def _costs(tok, chunks):
    sep = tok.count([SEPARATOR], add_special_tokens=False)[0]
    fixed = sum(tok.count([SYSTEM, QUESTION], add_special_tokens=False))
    counts = tok.count(chunks, add_special_tokens=False)
    return fixed, counts, sep


def test_separator_costs_tokens_for_smollm2(smollm2):
    assert smollm2.count([SEPARATOR], add_special_tokens=False)[0] >= 1


@pytest.mark.parametrize(
    ("strategy", "expected"), [(Strategy.GREEDY, [0, 2]), (Strategy.PREFIX, [0])]
)
def test_a_chunk_too_large_is_skipped_or_stops(smollm2, strategy, expected):
    chunks = [SMALL_A, HUGE, SMALL_B]
    fixed, counts, sep = _costs(smollm2, chunks)
    reserved = 10
    # Room for both small chunks but not for the huge one.
    budget = fixed + reserved + counts[0] + counts[2] + 2 * sep + 1
    assert counts[1] + sep > budget - fixed - reserved - counts[0] - sep
    result = pack(
        smollm2, budget=budget, system_prompt=SYSTEM, question=QUESTION, chunks=chunks,
        reserved=reserved, strategy=strategy,
    )
    assert result.selected == expected
    assert result.chunk_counts == counts
    assert result.fixed_tokens == fixed
    assert result.used_tokens == fixed + sum(counts[i] + sep for i in expected)
    assert result.used_tokens + result.remaining_tokens == budget - reserved


def test_everything_fits(smollm2):
    chunks = [SMALL_A, SMALL_B]
    fixed, counts, sep = _costs(smollm2, chunks)
    budget = 1000
    result = pack(smollm2, budget=budget, system_prompt=SYSTEM, question=QUESTION, chunks=chunks)
    assert result.selected == [0, 1]
    assert result.used_tokens == fixed + sum(counts) + 2 * sep
    assert result.remaining_tokens == budget - result.used_tokens


def test_exact_fit_is_taken(smollm2):
    chunks = [SMALL_A]
    fixed, counts, sep = _costs(smollm2, chunks)
    budget = fixed + counts[0] + sep
    result = pack(smollm2, budget=budget, system_prompt=SYSTEM, question=QUESTION, chunks=chunks)
    assert result.selected == [0]
    assert result.remaining_tokens == 0
    result = pack(smollm2, budget=budget - 1, system_prompt=SYSTEM, question=QUESTION, chunks=chunks)
    assert result.selected == []
    assert result.remaining_tokens == counts[0] + sep - 1


def test_explicit_separator_cost(smollm2):
    chunks = [SMALL_A, SMALL_B]
    fixed, counts, _ = _costs(smollm2, chunks)
    result = pack(
        smollm2, budget=1000, system_prompt=SYSTEM, question=QUESTION, chunks=chunks, separator_tokens=0
    )
    assert result.used_tokens == fixed + sum(counts)
    result = pack(
        smollm2, budget=1000, system_prompt=SYSTEM, question=QUESTION, chunks=chunks, separator_tokens=5
    )
    assert result.used_tokens == fixed + sum(counts) + 10


def test_no_chunks(smollm2):
    fixed, _, _ = _costs(smollm2, [SMALL_A])
    result = pack(smollm2, budget=500, system_prompt=SYSTEM, question=QUESTION, chunks=[], reserved=20)
    assert result.selected == [] and result.chunk_counts == []
    assert result.used_tokens == fixed
    assert result.remaining_tokens == 500 - 20 - fixed


def test_budget_is_counted_without_special_tokens(minilm):
    """The fixed part is plain text: no [CLS]/[SEP] per piece."""
    result = pack(minilm, budget=100, system_prompt="hello", question="world", chunks=["hello world"])
    assert result.fixed_tokens == 2
    assert result.chunk_counts == [2]


@pytest.mark.parametrize("budget", [0, -5])
def test_non_positive_budget(smollm2, budget):
    with pytest.raises(InvalidArgument) as info:
        pack(smollm2, budget=budget, system_prompt=SYSTEM, question=QUESTION, chunks=[SMALL_A])
    assert [v.field for v in info.value.field_violations] == ["token_budget"]


def test_budget_below_fixed_tokens(smollm2):
    fixed, _, _ = _costs(smollm2, [SMALL_A])
    with pytest.raises(InvalidArgument) as info:
        pack(smollm2, budget=fixed - 1, system_prompt=SYSTEM, question=QUESTION, chunks=[SMALL_A])
    assert [v.field for v in info.value.field_violations] == ["token_budget"]
    assert str(fixed) in info.value.message
    # The reserve counts too.
    with pytest.raises(InvalidArgument):
        pack(smollm2, budget=fixed + 5, system_prompt=SYSTEM, question=QUESTION, chunks=[], reserved=6)
    assert pack(smollm2, budget=fixed + 5, system_prompt=SYSTEM, question=QUESTION, chunks=[], reserved=5).remaining_tokens == 0


def test_too_many_chunks(smollm2):
    with pytest.raises(InvalidArgument) as info:
        pack(smollm2, budget=100, system_prompt="", question="", chunks=["x"] * 17)
    assert [v.field for v in info.value.field_violations] == ["chunks"]


def test_over_long_chunk_names_the_chunk(smollm2):
    with pytest.raises(InvalidArgument) as info:
        pack(smollm2, budget=100, system_prompt="", question="", chunks=["ok", "x" * 5001])
    assert [v.field for v in info.value.field_violations] == ["chunks[1]"]
