"""A base model with a peft prompt-tuning or prefix-tuning adapter, served as a model of its own.

With peft 0.21 and transformers 5.x, ``PeftModel.generate`` ignores a prefix-tuning adapter: transformers
passes the KV cache to ``prepare_inputs_for_generation`` as ``cache`` while peft looks for
``past_key_values``, so the prefix is never injected (its ``forward`` does apply it, which is why training
works). This engine does not go through ``generate``: it turns either adapter into what it is at inference,
keys and values in front of the prompt, and lets the shared scheduler decode from there.

* prefix tuning: the adapter's per-layer keys and values (``get_prompt``) are the first entries of the cache;
* prompt tuning: the soft prompt's embeddings are run through the model once, at load, and their keys and
  values become the same kind of prefix;

in both cases the prompt's tokens take positions after the virtual tokens, as in the training forward pass.
The test checks that greedy decoding here equals a greedy loop over the peft model's forward pass and differs
from the base model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from genai_core.errors import InvalidArgument
from transformers import AutoModelForCausalLM, DynamicCache

from genai_inference.engines.base import adapter_not_loaded, adapters_unsupported
from genai_inference.kv import KVBatch, Layer, Piece, empty_batch, restore, snapshot
from genai_inference.models import ModelSource, eos_token_ids, model_info

PROMPT_LEARNING = ("PREFIX_TUNING", "PROMPT_TUNING")


def prompt_learning_type(adapter_dir: Path) -> str | None:
    """The adapter's peft type when it is prompt or prefix tuning, else None."""
    config = adapter_dir / "adapter_config.json"
    if not config.exists():
        return None
    kind = json.loads(config.read_text()).get("peft_type", "")
    return kind if kind in PROMPT_LEARNING else None


def _layers(cache) -> list[Layer]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class PromptLearningEngine:
    name = "torch"
    supports_adapters = False  # its own adapter is built in; LoRA adapters go to the default model
    adapters: Mapping[str, Path] = MappingProxyType({})

    def __init__(self, source: ModelSource, adapter_dir: Path, model_id: str, *, threads: int = 2) -> None:
        from peft import PeftModel

        torch.set_num_threads(threads)
        kind = prompt_learning_type(adapter_dir)
        if kind is None:
            raise InvalidArgument.for_field("path", f"'{adapter_dir}' is not a prompt- or prefix-tuning adapter")
        base = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32).eval()
        try:
            adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        except (ValueError, RuntimeError, KeyError) as exc:
            raise InvalidArgument.for_field("path", f"the adapter does not fit this base model: {exc}") from exc
        self.virtual_tokens = int(adapted.peft_config["default"].num_virtual_tokens)
        with torch.no_grad():
            prompt = adapted.get_prompt(batch_size=1)
            if kind == "PREFIX_TUNING":
                self._prefix = _layers(prompt)
            else:  # the soft prompt's keys and values, computed once
                out = base(inputs_embeds=prompt.to(torch.float32), use_cache=True,
                           position_ids=torch.arange(self.virtual_tokens)[None, :])
                self._prefix = _layers(out.cache)
        self._model = base
        self._lock = threading.Lock()
        info = model_info(source, self.name, base.config.vocab_size)
        self.info = replace(info, id=model_id, base_model=source.id, is_adapter=True, source=str(adapter_dir),
                            revision=f"{info.revision}+{kind.lower()}")
        self.eos_token_ids = eos_token_ids(source.directory)
        self.peft_type = kind

    def load_adapter(self, name: str, path: Path) -> None:
        raise adapters_unsupported(self.name)

    def unload_adapter(self, name: str) -> None:
        raise adapter_not_loaded(name)

    def _forward(self, input_ids, attention_mask, position_ids, layers: list[Layer]):
        cache = DynamicCache()
        for index, (key, value) in enumerate(layers):
            cache.update(key, value, index)
        with self._lock, torch.no_grad():
            out = self._model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              cache=cache, use_cache=True)
        return out.logits, _layers(out.cache)

    # A row's KV is the virtual tokens, then the prompt. The scheduler's prefix cache counts prompt positions
    # only, so snapshots skip the virtual tokens and a restored row gets them back in front.

    def new_batch(self) -> KVBatch:
        return empty_batch()

    def snapshot(self, row: KVBatch, start: int, end: int) -> Piece:
        return snapshot(row, start + self.virtual_tokens, end + self.virtual_tokens)

    def restore(self, pieces: Sequence[Piece], length: int) -> KVBatch:
        return restore([Piece(self._prefix), *pieces], self.virtual_tokens + length)

    def prefill(self, ids: Sequence[int], *, past: KVBatch | None = None, adapter: str | None = None,
                all_logits: bool = False) -> tuple[np.ndarray, KVBatch]:
        start = past.length if past is not None else self.virtual_tokens
        total = start + len(ids)
        logits, layers = self._forward(
            torch.tensor([list(ids)], dtype=torch.long), torch.ones(1, total, dtype=torch.long),
            torch.arange(start, total, dtype=torch.long)[None, :], past.layers if past is not None else self._prefix)
        logits = logits[0] if all_logits else logits[0, -1:]
        return logits.float().contiguous().numpy(), KVBatch.from_prefill(layers, total)

    def decode(self, batch: KVBatch, tokens: np.ndarray, adapters: Sequence[str | None]) -> np.ndarray:
        logits, layers = self._forward(torch.from_numpy(np.asarray(tokens, dtype=np.int64))[:, None],
                                       batch.step_mask(), batch.positions[:, None], batch.layers)
        batch.advance(layers)
        return logits[:, -1].float().contiguous().numpy()
