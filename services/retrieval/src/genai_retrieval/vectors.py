"""A collection's vectors of many texts: the embedding port called in batches, with the collection's models.

    vectors = Vectors(embeddings, batch_size=64)
    encoded = await vectors.encode(collection, ["a chunk", "another"], sparse=collection.sparse_enabled)
"""

from __future__ import annotations

from collections.abc import Sequence

from genai_core.errors import InvalidArgument
from genai_sparse import bm25

from genai_retrieval.ports import Embeddings
from genai_retrieval.types import Collection, Embedded, SparseVector


def local_sparse_query(collection: Collection, query: str) -> SparseVector | None:
    """The query's sparse vector computed here (the same analyzer the embedding service runs), when the
    collection's sparse model needs nothing but the text; None when only the embedding service can (the
    WordPiece model needs its tokenizer). A sparse-only search then works while the embedding service is
    down (issue 14, defect 10), and is one hop shorter."""
    vector = bm25.text_vector(bm25.SPARSE_ALIASES.get(collection.sparse_model, collection.sparse_model), query)
    return SparseVector(vector.indices, vector.values) if vector is not None else None


class Vectors:
    def __init__(self, embeddings: Embeddings, batch_size: int) -> None:
        self._embeddings = embeddings
        self._batch = batch_size

    async def encode(self, collection: Collection, texts: Sequence[str], *, sparse: bool,
                     dense: bool = True) -> Embedded:
        """Dense and/or sparse vectors of ``texts``, in order, and the prompt tokens they took."""
        dense_out: list[list[float]] = []
        sparse_out = []
        tokens = 0
        for i in range(0, len(texts), self._batch):
            got = await self._embeddings.embed(
                collection.embedding_model, texts[i : i + self._batch], dense=dense, sparse=sparse,
                sparse_model=collection.sparse_model if sparse else "", dimensions=collection.truncated_dimensions)
            tokens += got.prompt_tokens
            for vector in got.dense:
                # A model swapped behind the same name would write vectors the collection cannot hold.
                if len(vector) != collection.dimensions:
                    raise InvalidArgument.for_field(
                        "vector_config.dimensions",
                        f"the embedding service returned {len(vector)} dimensions, the collection has "
                        f"{collection.dimensions}")
            dense_out.extend(got.dense)
            sparse_out.extend(got.sparse)
        return Embedded(dense_out, sparse_out, tokens)
