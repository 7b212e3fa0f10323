"""BM25-style sparse vectors from WordPiece token ids: saturated term frequency, no IDF.

IDF depends on the corpus, so it belongs to the index (the retrieval service multiplies it in at
query time); an embedding is a property of one text. For term ``t`` with count ``tf`` in a text
of ``dl`` tokens (special tokens excluded)::

    weight(t) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    >>> vector = bm25_weights([7, 7, 9], special_ids=set())
    >>> vector.indices
    [7, 9]
    >>> [round(v, 3) for v in vector.values]
    [1.879, 1.639]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]  # token ids, ascending
    values: list[float]


def bm25_weights(
    ids: Sequence[int], special_ids: Iterable[int], *, k1: float = 1.2, b: float = 0.75, avg_doc_tokens: float = 64.0
) -> SparseVector:
    """Term weights of one tokenized text; ``special_ids`` ([CLS], [SEP], [PAD]...) are dropped."""
    skip = set(special_ids)
    counts = Counter(i for i in ids if i not in skip)
    length = sum(counts.values())
    norm = k1 * (1 - b + b * length / avg_doc_tokens)
    indices = sorted(counts)
    return SparseVector(indices, [counts[i] * (k1 + 1) / (counts[i] + norm) for i in indices])
