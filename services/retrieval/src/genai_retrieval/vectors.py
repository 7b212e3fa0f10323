"""A collection's vectors of many texts: the embedding port called in batches, with the collection's models.

    vectors = Vectors(embeddings, batch_size=64)
    encoded = await vectors.encode(collection, ["a chunk", "another"], sparse=collection.sparse_enabled)
"""

from __future__ import annotations

from collections.abc import Sequence

from genai_core.errors import InvalidArgument

from genai_retrieval.ports import Embeddings
from genai_retrieval.types import Collection, Embedded


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
