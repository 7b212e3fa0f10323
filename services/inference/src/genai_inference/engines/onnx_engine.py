"""The onnxruntime KV engine: one exported graph (see :mod:`genai_inference.onnx_export`) runs prefill and decode.

The KV cache lives in torch CPU tensors (``KVBatch``); ORT reads them through zero-copy
``.numpy()`` views and its outputs come back as ``torch.from_numpy`` views, so the only copy per
step is the one the graph makes (the ``Concat`` of past and new keys/values into ``present``).
IOBinding was measured and does not help: binding preallocated outputs was 2x slower at batch 8,
binding ORT-allocated outputs the same speed as ``run``.

For the scheduler:

* One forward at a time per engine (``decode`` mutates the batch). ``InferenceSession.run`` releases
  the GIL, so calling ``prefill``/``decode`` from a worker thread (``asyncio.to_thread``) keeps the
  event loop free.
* ``threads`` sets ORT's intra-op pool. Spinning is off by default (``spin=False``): on the shared
  2-core host under load (load average ~6), spinning halved decode throughput (batch 1: 10 vs 19
  tok/s median, batch 8: 45 vs 86) and burns CPU the gateway and tokenizer need; ``threads=1`` was
  as fast as 2 under that load. On an idle, dedicated host ``spin=True`` may win a little.
* Memory: the fp32 session holds ~510 MB (int8 ~130 MB). The KV cache costs
  ``layers * 2 * kv_heads * head_dim * 4`` bytes per token (46 KB for SmolLM2-135M; 8 rows x 2k
  tokens = 750 MB), and a decode step holds the old and the new cache at once; measured, RSS grew
  ~2.7x the cache size (+795 MB at a 298 MB cache, batch 8 x 847 tokens), so budget ~3x.
* Prompts are prefilled in chunks of ``prefill_chunk`` tokens (512) against the growing cache, so
  the attention scores of a long prompt never need S x S memory.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from genai_inference import onnx_export
from genai_inference.engines.base import adapter_not_loaded, adapters_unsupported
from genai_inference.kv import KVBatch, Layer, Piece, empty_batch, restore, snapshot
from genai_inference.models import ModelSource, eos_token_ids, model_info

logger = logging.getLogger(__name__)

PREFILL_CHUNK = 512
_LAST = np.zeros(1, dtype=np.int64)  # decode feeds one token per row: keep the logits of position 0


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return tensor.numpy()


class OnnxEngine:
    """A ``KVEngine`` over an onnxruntime CPU session. Not thread-safe: one forward at a time."""

    name = "onnxruntime"
    supports_adapters = False
    adapters: Mapping[str, Path] = MappingProxyType({})

    def __init__(
        self,
        source: ModelSource,
        cache_dir: Path,
        *,
        precision: str = "fp32",
        threads: int = 2,
        spin: bool = False,
        prefill_chunk: int = PREFILL_CHUNK,
    ) -> None:
        import onnxruntime as ort

        self.source = source
        self.precision = precision
        self.prefill_chunk = prefill_chunk
        self.model_path = onnx_export.export(source, Path(cache_dir), precision)
        config = json.loads((source.directory / "config.json").read_text())
        self.num_layers = int(config["num_hidden_layers"])
        self.kv_heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
        vocab = int(config["vocab_size"])

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        started = time.perf_counter()
        self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.load_seconds = time.perf_counter() - started
        logger.info("onnxruntime session for %s (%s) loaded in %.1f s", source.id, precision, self.load_seconds)

        self._past_names = onnx_export.past_names(self.num_layers)
        self._output_names = onnx_export.output_names(self.num_layers)
        self.eos_token_ids = eos_token_ids(source.directory)
        self.info = model_info(source, self.name, vocab, "" if precision == "fp32" else precision)

    def load_adapter(self, name: str, path: Path) -> None:
        raise adapters_unsupported(self.name)

    def unload_adapter(self, name: str) -> None:
        raise adapter_not_loaded(name)

    def _run(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        positions: np.ndarray,
        logits_index: np.ndarray,
        layers: Sequence[Layer] | None,
    ) -> tuple[np.ndarray, list[Layer]]:
        feed: dict[str, np.ndarray] = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            "logits_index": logits_index,
        }
        if layers is None:
            empty = np.zeros((ids.shape[0], self.kv_heads, 0, self.head_dim), dtype=np.float32)
            feed.update(dict.fromkeys(self._past_names, empty))
        else:
            for i, (key, value) in enumerate(layers):
                feed[self._past_names[2 * i]] = _as_numpy(key)
                feed[self._past_names[2 * i + 1]] = _as_numpy(value)
        outputs = self.session.run(self._output_names, feed)
        presents = [
            (torch.from_numpy(outputs[1 + 2 * i]), torch.from_numpy(outputs[2 + 2 * i])) for i in range(self.num_layers)
        ]
        return outputs[0], presents

    def new_batch(self) -> KVBatch:
        return empty_batch()

    def snapshot(self, row: KVBatch, start: int, end: int) -> Piece:
        return snapshot(row, start, end)

    def restore(self, pieces: Sequence[Piece], length: int) -> KVBatch:
        return restore(pieces, length)

    def prefill(
        self, ids: Sequence[int], *, past: KVBatch | None = None, adapter: str | None = None, all_logits: bool = False
    ) -> tuple[np.ndarray, KVBatch]:
        if adapter is not None:
            raise adapters_unsupported(self.name)
        tokens = np.asarray(ids, dtype=np.int64)
        length = int(tokens.shape[0])
        if length == 0:
            raise ValueError("prefill needs at least one token")
        offset = past.length if past is not None else 0
        layers: list[Layer] | None = past.layers if past is not None else None
        kept: list[np.ndarray] = []
        for start in range(0, length, self.prefill_chunk):
            end = min(start + self.prefill_chunk, length)
            if all_logits:
                wanted = np.arange(end - start, dtype=np.int64)
            elif end == length:
                wanted = np.array([end - start - 1], dtype=np.int64)
            else:
                wanted = np.zeros(0, dtype=np.int64)  # no logits needed from inner chunks
            logits, layers = self._run(
                tokens[None, start:end],
                np.ones((1, offset + end), dtype=np.int64),
                np.arange(offset + start, offset + end, dtype=np.int64)[None, :],
                wanted,
                layers,
            )
            kept.append(logits[0])
        assert layers is not None
        out = kept[0] if len(kept) == 1 else np.concatenate(kept)
        return out, KVBatch.from_prefill(layers, offset + length)

    def decode(self, batch: KVBatch, tokens: np.ndarray, adapters: Sequence[str | None]) -> np.ndarray:
        if any(a is not None for a in adapters):
            raise adapters_unsupported(self.name)
        logits, layers = self._run(
            np.asarray(tokens, dtype=np.int64).reshape(-1, 1),
            _as_numpy(batch.step_mask()),
            _as_numpy(batch.positions.reshape(-1, 1)),
            _LAST,
            batch.layers,
        )
        batch.advance(layers)
        return logits[:, 0, :]
