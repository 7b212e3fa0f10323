"""LoRA adapters (PEFT's saved format) for the quantized graph: the low-rank update runs as its own
small matmul next to the 4-bit base weights (as QLoRA and LoRAX do), never merged into them.

For each projection group of a layer (``qkv``, ``o``, ``gate_up``, ``down``, see
:mod:`genai_inference.quantized_graph`) the loaded adapters sit side by side along the rank axis:
``A`` [K, R] holds every adapter's ``lora_A.T`` (zero where an adapter leaves a target or layer out),
``B`` [R, N] their ``lora_B.T`` times ``alpha / r`` in the columns of their own projection. A row of
a batch selects its adapter through ``lora_scale`` [rows, R]: 1 in that adapter's rank columns, 0
elsewhere (a base-model row is all zeros), so rows with different adapters share one forward.

Read without torch: safetensors files are parsed here (F32, F16, BF16), adapter_config.json decides
scaling (``lora_alpha / r``, or ``/ sqrt(r)`` with ``use_rslora``; ``alpha_pattern`` honoured).
Not servable and refused with the reason: DoRA, LoRA on embeddings or the LM head, ``modules_to_save``,
biases, pickled ``adapter_model.bin``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from genai_core.errors import AlreadyExists, InvalidArgument

from genai_inference.engines.base import adapter_not_loaded
from genai_inference.gguf_weights import LlamaShape
from genai_inference.quantized_graph import GROUPS, group_widths

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$")
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument.for_field("path", message)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as float32 numpy arrays."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
        data = handle.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        raw = data[begin:end]
        if meta["dtype"] == "BF16":
            array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif meta["dtype"] in _DTYPES:
            array = np.frombuffer(raw, dtype=_DTYPES[meta["dtype"]])
        else:
            raise _bad(f"{path.name}: tensor {name} is {meta['dtype']}; adapters must be F32, F16 or BF16")
        out[name] = array.astype(np.float32).reshape(meta["shape"])
    return out


def _pattern_value(patterns: dict, module: str, default: float) -> float:
    """PEFT's rule: a pattern matches a module name ending in it (after a dot)."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return float(value)
    return default


@dataclass(frozen=True)
class Adapter:
    name: str
    path: Path
    # (layer, target) -> (A.T [K, r], B.T * scaling [r, N])
    weights: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]

    def rank(self, target: str) -> int:
        return max((a.shape[1] for (_, t), (a, _) in self.weights.items() if t == target), default=0)


def read_config(path: Path) -> dict:
    file = path / CONFIG
    if not file.exists():
        raise _bad(f"'{path}' is not a PEFT adapter directory (no {CONFIG})")
    config = json.loads(file.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise _bad(f"only LoRA adapters can be served, not {config.get('peft_type')}")
    if config.get("use_dora"):
        raise _bad("DoRA adapters are not served on the quantized engine; use GENAI_INFERENCE_ENGINE=torch")
    if config.get("bias", "none") != "none":
        raise _bad(f"LoRA bias '{config.get('bias')}' is not served; train with bias='none'")
    if config.get("modules_to_save"):
        raise _bad("adapters with modules_to_save (full copies of layers) are not served on the quantized engine")
    if not (path / WEIGHTS).exists():
        raise _bad(f"'{path}' has no {WEIGHTS} (pickled adapter_model.bin is not read; save with safetensors)")
    return config


def read_adapter(name: str, path: Path, shape: LlamaShape) -> Adapter:
    config = read_config(path)
    alpha = float(config.get("lora_alpha", 8))
    alpha_pattern = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora"))
    tensors = read_safetensors(path / WEIGHTS)
    halves: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, array in tensors.items():
        match = _KEY.search(key)
        if match is None:
            if "lora_" in key:
                raise _bad(f"{key}: only LoRA on the attention and MLP projections is served on the quantized engine")
            continue
        layer, target, half = int(match.group(1)), match.group(2), match.group(3)
        if target not in {t for group in GROUPS.values() for t in group} or not 0 <= layer < shape.layers:
            raise _bad(f"{key} does not fit this base model")
        halves.setdefault((layer, target), {})[half] = array
    widths = group_widths(shape)
    weights = {}
    for (layer, target), pair in halves.items():
        if set(pair) != {"A", "B"}:
            raise _bad(f"layer {layer} {target}: lora_A and lora_B must both be present")
        a, b = pair["A"], pair["B"]
        group = next(g for g, ts in GROUPS.items() if target in ts)
        k, outs = widths[group]
        n = outs[GROUPS[group].index(target)]
        r = a.shape[0]
        if a.shape != (r, k) or b.shape != (n, r):
            raise _bad(f"layer {layer} {target}: lora_A {a.shape} / lora_B {b.shape} do not fit [{r}, {k}] / [{n}, {r}]")
        module = f"model.layers.{layer}.{'self_attn' if group in ('qkv', 'o') else 'mlp'}.{target}"
        scaling = _pattern_value(alpha_pattern, module, alpha) / (math.sqrt(r) if rslora else r)
        weights[(layer, target)] = (np.ascontiguousarray(a.T), np.ascontiguousarray(b.T * np.float32(scaling)))
    if not weights:
        raise _bad(f"'{path}' holds no LoRA weights for this model's projections")
    return Adapter(name, path, weights)


class LoraSet:
    """The loaded adapters as the quantized graph's LoRA inputs."""

    def __init__(self, shape: LlamaShape) -> None:
        self.shape = shape
        self._adapters: dict[str, Adapter] = {}
        self._inputs: dict[str, np.ndarray] = {}
        self._columns: dict[str, dict[str, slice]] = {g: {} for g in GROUPS}  # group -> adapter -> its columns
        self._ranks: dict[str, int] = dict.fromkeys(GROUPS, 1)

    @property
    def paths(self) -> dict[str, Path]:
        return {name: a.path for name, a in self._adapters.items()}

    def check_new(self, name: str, path: Path) -> None:
        if name in self._adapters:
            raise AlreadyExists(f"adapter '{name}' is loaded; unload it first", resource_type="adapter",
                                resource_name=name)
        read_config(path)

    def add(self, name: str, path: Path) -> None:
        self.check_new(name, path)
        self._adapters[name] = read_adapter(name, path, self.shape)
        self._rebuild()

    def remove(self, name: str) -> None:
        if name not in self._adapters:
            raise adapter_not_loaded(name)
        del self._adapters[name]
        self._rebuild()

    def _rebuild(self) -> None:
        widths = group_widths(self.shape)
        inputs: dict[str, np.ndarray] = {}
        for group, targets in GROUPS.items():
            k, outs = widths[group]
            offsets = np.cumsum((0, *outs))
            spans: list[tuple[str, str, int]] = [(a.name, t, a.rank(t)) for a in self._adapters.values()
                                                 for t in targets if a.rank(t)]
            rank = max(1, sum(r for _, _, r in spans))  # a zero column when nothing adapts this group
            self._ranks[group] = rank
            columns: dict[str, slice] = {}
            at = 0
            for adapter, _, r in spans:
                first = columns[adapter].start if adapter in columns else at
                columns[adapter] = slice(first, at + r)
                at += r
            self._columns[group] = columns
            for layer in range(self.shape.layers):
                a_all = np.zeros((k, rank), dtype=np.float32)
                b_all = np.zeros((rank, int(offsets[-1])), dtype=np.float32)
                at = 0
                for adapter, target, r in spans:
                    pair = self._adapters[adapter].weights.get((layer, target))
                    if pair is not None:
                        a, b = pair
                        index = targets.index(target)
                        a_all[:, at : at + a.shape[1]] = a
                        b_all[at : at + a.shape[1], offsets[index] : offsets[index + 1]] = b
                    at += r
                inputs[f"lora_A.{layer}.{group}"] = a_all
                inputs[f"lora_B.{layer}.{group}"] = b_all
        self._inputs = inputs

    def inputs(self) -> dict[str, np.ndarray]:
        return self._inputs

    def scale_arrays(self, rows: int) -> dict[str, np.ndarray]:
        return {group: np.zeros((rows, self._ranks[group]), dtype=np.float32) for group in GROUPS}

    def fill_scales(self, scales: dict[str, np.ndarray], adapters: list[str | None] | tuple) -> None:
        """Row t selects the columns of its adapter (scaling is folded into B)."""
        for group, array in scales.items():
            array[:] = 0.0
            columns = self._columns[group]
            for row, adapter in enumerate(adapters):
                span = columns.get(adapter) if adapter else None
                if span is not None:
                    array[row, span] = 1.0
