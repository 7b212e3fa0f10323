"""BM25-style sparse vectors: an analyzer turns a text into terms, terms get saturated-TF weights, no IDF.

IDF depends on the corpus, so it belongs to the index (the retrieval service's Qdrant multiplies it
in at query time); an embedding is a property of one text. For term ``t`` with count ``tf`` in a
text of ``dl`` terms::

    weight(t) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    >>> vector = bm25_weights([7, 7, 9], k1=1.2, b=0.75, avgdl=64.0)
    >>> vector.indices
    [7, 9]
    >>> [round(v, 3) for v in vector.values]
    [1.879, 1.639]

Analyzers, by sparse model id (``SPARSE_MODELS``):

- ``bm25-english`` (default): lowercased words of two or more letters or digits, the Lucene English
  stop words, the Snowball English stemmer, each stem hashed to a 31-bit id (blake2b). This is the
  analysis of the classic BM25 baselines (benchmarks/results/retrieval.md compares the two).
- ``bm25-wordpiece``: the dense model's WordPiece ids (special tokens dropped). Subwords split rare
  terms and nothing is stemmed; kept for collections made with it (its old id was the dense model's,
  ``all-minilm-l6-v2``, still accepted).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

# The BM25 parameters a query is weighted with when no others are configured (the embedding service's
# GENAI_EMBEDDING_SPARSE_* default to them). With IDF applied by the index and each query term counted once,
# the weights scale every term alike, so a query's ranking does not depend on them.
K1, B, AVG_DOC_TERMS = 1.2, 0.75, 100.0

# Lucene's EnglishAnalyzer default stop set (also Elasticsearch's `_english_` minimal set).
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
_WORD = re.compile(r"(?u)\b\w\w+\b")
HASH_SPACE = 2**31  # term ids are below this: they fit any signed 32-bit consumer


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]  # term ids, ascending
    values: list[float]


def bm25_weights(terms: Iterable[Hashable], *, k1: float, b: float, avgdl: float, ids: Callable = lambda t: t
                 ) -> SparseVector:
    """Saturated term-frequency weights of one analysed text; ``ids`` maps a term to its index."""
    counts = Counter(ids(t) for t in terms)
    length = sum(counts.values())
    norm = k1 * (1 - b + b * length / avgdl)
    indices = sorted(counts)
    return SparseVector(indices, [counts[i] * (k1 + 1) / (counts[i] + norm) for i in indices])


def term_id(term: str) -> int:
    """A stable 31-bit id for a term: the same in every process and release (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little") % HASH_SPACE


class EnglishAnalyzer:
    """Words → lowercase → drop stop words → Snowball English stems → hashed ids."""

    dimensions = HASH_SPACE

    def __init__(self) -> None:
        import Stemmer  # PyStemmer: the Snowball stemmers in C

        self._stem = Stemmer.Stemmer("english").stemWords
        self._ids: dict[str, int] = {}  # stems seen so far; a corpus has tens of thousands

    def _id(self, stem: str) -> int:
        found = self._ids.get(stem)
        if found is None:
            found = self._ids[stem] = term_id(stem)
        return found

    def terms(self, text: str, token_ids: Sequence[int]) -> list[int]:  # noqa: ARG002 - works on the text
        words = [w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]
        return [self._id(s) for s in self._stem(words)]


class WordPieceAnalyzer:
    """The dense model's token ids, special tokens dropped."""

    def __init__(self, special_ids: Iterable[int], vocab_size: int) -> None:
        self._skip = frozenset(special_ids)
        self.dimensions = vocab_size

    def terms(self, text: str, token_ids: Sequence[int]) -> list[int]:  # noqa: ARG002 - works on the ids
        return [i for i in token_ids if i not in self._skip]


DEFAULT_SPARSE_MODEL = "bm25-english"
SPARSE_MODELS = {"bm25-english": "english", "bm25-wordpiece": "wordpiece"}  # id → analyzer name in Embedder
SPARSE_ALIASES = {"all-minilm-l6-v2": "bm25-wordpiece"}  # earlier ids, so old collections keep working
TEXT_ANALYZERS = {"bm25-english": EnglishAnalyzer}  # the sparse models that need nothing but the text


def text_vector(sparse_model: str, text: str) -> SparseVector | None:
    """``text``'s sparse vector under ``sparse_model`` with the default parameters; None when that model needs
    the dense model's tokenizer (bm25-wordpiece), which only the embedding service has."""
    analyzer = TEXT_ANALYZERS.get(sparse_model)
    if analyzer is None:
        return None
    return bm25_weights(_analyzer(analyzer).terms(text, ()), k1=K1, b=B, avgdl=AVG_DOC_TERMS)


_ANALYZERS: dict[type, object] = {}


def _analyzer(cls: type):  # noqa: ANN202 - one instance per kind: it caches the stems it has hashed
    if cls not in _ANALYZERS:
        _ANALYZERS[cls] = cls()
    return _ANALYZERS[cls]
