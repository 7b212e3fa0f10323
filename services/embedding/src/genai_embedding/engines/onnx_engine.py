"""onnxruntime over the exported BERT + mean-pooling graph (fp32, or int8 on request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genai_embedding.engines import onnx_export
from genai_embedding.model import ModelSource


class OnnxEngine:
    def __init__(self, source: ModelSource, cache_dir: Path, precision: str = "fp32", threads: int = 2) -> None:
        import onnxruntime as ort

        path = onnx_export.export(source, cache_dir, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.name = "onnxruntime" if precision == "fp32" else f"onnxruntime-{precision}"
        self.version = ort.__version__
        self.path = path

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        return self._session.run(["sentence_embedding"], feeds)[0]
