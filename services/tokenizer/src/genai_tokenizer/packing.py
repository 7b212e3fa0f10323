"""Choose which retrieved chunks fit a model's token budget (used by RAG before generation)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from genai_core.errors import InvalidArgument

from genai_tokenizer.model import Tokenizer

SEPARATOR = "\n\n"


class Strategy(enum.Enum):
    GREEDY = "greedy"  # skip a chunk that does not fit and try the later, smaller ones
    PREFIX = "prefix"  # stop at the first chunk that does not fit (keeps strict rank order)


@dataclass(frozen=True)
class PackResult:
    selected: list[int]
    chunk_counts: list[int]
    used_tokens: int
    remaining_tokens: int
    fixed_tokens: int


def pack(
    tokenizer: Tokenizer,
    *,
    budget: int,
    system_prompt: str,
    question: str,
    chunks: list[str],
    reserved: int = 0,
    strategy: Strategy = Strategy.GREEDY,
    separator_tokens: int | None = None,
) -> PackResult:
    """Chunks are counted one by one; the sum is what a prompt joining them with blank lines costs."""
    if budget <= 0:
        raise InvalidArgument.for_field("token_budget", "set a positive token budget")
    if len(chunks) > tokenizer.limits.max_batch_size:
        raise InvalidArgument.for_field(
            "chunks", f"{len(chunks)} chunks exceed the batch limit of {tokenizer.limits.max_batch_size}"
        )
    fixed = tokenizer.count([system_prompt], add_special_tokens=False, field="system_prompt")[0]
    fixed += tokenizer.count([question], add_special_tokens=False, field="question")[0]
    counts = tokenizer.count(chunks, add_special_tokens=False, field="chunks") if chunks else []
    sep = separator_tokens if separator_tokens is not None else tokenizer.count([SEPARATOR], add_special_tokens=False)[0]
    available = budget - reserved - fixed
    if available < 0:
        raise InvalidArgument.for_field(
            "token_budget",
            f"the system prompt and question take {fixed} tokens and {reserved} are reserved, "
            f"over the budget of {budget}; raise the budget or shorten them",
        )
    selected: list[int] = []
    used = fixed
    for index, count in enumerate(counts):
        cost = count + sep
        if cost <= available:
            selected.append(index)
            available -= cost
            used += cost
        elif strategy is Strategy.PREFIX:
            break
    return PackResult(selected, counts, used, available, fixed)
