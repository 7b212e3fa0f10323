"""The portable engine: transformers on torch (fp32 on CPU), with LoRA adapters through PEFT.

Rows of one batch may use different adapters (or none): PEFT's mixed-adapter forward takes one
adapter name per row, so adapter requests share the batch with base-model requests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from genai_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from transformers import AutoModelForCausalLM, DynamicCache

from genai_inference.engines.base import ADAPTER_UNLOADED, adapter_not_loaded
from genai_inference.kv import KVBatch, Layer, Piece, empty_batch, restore, snapshot
from genai_inference.models import ModelSource, eos_token_ids, model_info

logger = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class TorchEngine:
    name = "torch"
    supports_adapters = True

    def __init__(self, source: ModelSource, *, threads: int = 2) -> None:
        torch.set_num_threads(threads)
        model = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32)
        model.eval()
        self._base = model
        self._model = model
        self._adapters: dict[str, Path] = {}
        self._lock = threading.Lock()  # adapter load/unload vs forward
        self.info = model_info(source, self.name, model.config.vocab_size)
        self.eos_token_ids = eos_token_ids(source.directory)

    # -- adapters ---------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, Path]:
        return dict(self._adapters)

    def load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if name in self._adapters:
            raise AlreadyExists(f"adapter '{name}' is loaded; unload it first", resource_type="adapter", resource_name=name)
        if not (path / "adapter_config.json").exists():
            raise InvalidArgument.for_field("path", f"'{path}' is not a PEFT adapter directory (no adapter_config.json)")
        config = json.loads((path / "adapter_config.json").read_text())
        if config.get("peft_type", "LORA") != "LORA":
            raise InvalidArgument.for_field("path", f"only LoRA adapters can be served, not {config.get('peft_type')}")
        with self._lock:
            try:
                if self._model is self._base:
                    self._model = PeftModel.from_pretrained(self._base, str(path), adapter_name=name)
                else:
                    self._model.load_adapter(str(path), adapter_name=name)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise InvalidArgument.for_field("path", f"the adapter does not fit this base model: {exc}") from exc
            self._model.eval()
            self._adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise adapter_not_loaded(name)
        with self._lock:
            if len(self._adapters) == 1:
                # PEFT keeps pointing at a deleted last adapter; unwrapping gives back the plain base model.
                self._model = self._model.unload()
                self._base = self._model
            else:
                self._model.delete_adapter(name)
            del self._adapters[name]

    # -- forward ----------------------------------------------------------------------------

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        layers: list[Layer],
        adapters: Sequence[str | None],
    ) -> tuple[torch.Tensor, list[Layer]]:
        cache = DynamicCache()
        for index, (key, value) in enumerate(layers):
            cache.update(key, value, index)
        kwargs = {}
        if any(adapters) or self._adapters:  # with PEFT loaded, base rows must say so or the active adapter runs
            missing = [a for a in adapters if a and a not in self._adapters]
            if missing:
                raise FailedPrecondition(f"adapter '{missing[0]}' was unloaded", reason=ADAPTER_UNLOADED)
            kwargs["adapter_names"] = [a or BASE for a in adapters]
        with self._lock, torch.no_grad():  # not inference_mode: the sampler edits the logits in place
            out = self._model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                **kwargs,
            )
        new_layers = [(layer.keys, layer.values) for layer in out.cache.layers]
        return out.logits, new_layers

    def new_batch(self) -> KVBatch:
        return empty_batch()

    def snapshot(self, row: KVBatch, start: int, end: int) -> Piece:
        return snapshot(row, start, end)

    def restore(self, pieces: Sequence[Piece], length: int) -> KVBatch:
        return restore(pieces, length)

    def prefill(
        self, ids: Sequence[int], *, past: KVBatch | None = None, adapter: str | None = None, all_logits: bool = False
    ) -> tuple[np.ndarray, KVBatch]:
        start = past.length if past is not None else 0
        total = start + len(ids)
        logits, layers = self._forward(
            torch.tensor([list(ids)], dtype=torch.long),
            torch.ones(1, total, dtype=torch.long),
            torch.arange(start, total, dtype=torch.long)[None, :],
            past.layers if past is not None else [],
            [adapter],
        )
        logits = logits[0] if all_logits else logits[0, -1:]
        return logits.float().contiguous().numpy(), KVBatch.from_prefill(layers, total)

    def decode(self, batch: KVBatch, tokens: np.ndarray, adapters: Sequence[str | None]) -> np.ndarray:
        logits, layers = self._forward(
            torch.from_numpy(np.asarray(tokens, dtype=np.int64))[:, None], batch.step_mask(), batch.positions[:, None],
            batch.layers, adapters,
        )
        batch.advance(layers)
        return logits[:, -1].float().contiguous().numpy()
