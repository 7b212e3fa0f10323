"""BM25 sparse vectors of text (``genai_sparse.bm25``): the embedding service computes them for documents and
queries; the retrieval service computes a sparse-only search's query itself, so that search needs no
embedding service. One implementation, so both ends agree term for term."""
