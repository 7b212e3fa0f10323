"""Mean pooling over real tokens and L2 normalisation, as sentence-transformers does them.

    >>> import numpy as np
    >>> mean_pool(np.array([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), np.array([[1, 1, 0]])).tolist()
    [[2.0, 3.0]]
    >>> l2_normalize(np.array([[3.0, 4.0]])).tolist()
    [[0.6, 0.8]]
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12  # sentence-transformers' clamp for the token count and torch.nn.functional.normalize's


def mean_pool(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """[B, S, H] and [B, S] -> [B, H]: the mean of the embeddings where the mask is 1."""
    mask = attention_mask[..., None].astype(token_embeddings.dtype)
    return (token_embeddings * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), EPS)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, EPS)
