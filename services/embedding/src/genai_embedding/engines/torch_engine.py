"""The portable engine: transformers ``AutoModel`` (BERT) + mean pooling, in fp32 on CPU."""

from __future__ import annotations

import numpy as np

from genai_embedding.model import ModelSource


class TorchEngine:
    name = "torch"

    def __init__(self, source: ModelSource, threads: int = 2) -> None:
        import torch
        from transformers import AutoModel

        torch.set_num_threads(threads)
        self.version = torch.__version__
        self._torch = torch
        self._model = AutoModel.from_pretrained(str(source.directory), dtype=torch.float32).eval()

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64))
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64))
        with torch.inference_mode():
            hidden = self._model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
            m = mask[..., None].to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return pooled.numpy().astype(np.float32, copy=False)
