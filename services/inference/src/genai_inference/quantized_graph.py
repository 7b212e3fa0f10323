"""The ONNX graph of a llama-family model over its GGUF's own quantized weights (no torch, no export).

Every projection is ``com.microsoft::MatMulNBits`` on the GGUF blocks as they are (see
:mod:`genai_inference.gguf_weights`), plus, for Q4_1, the ``m`` correction ``(x @ E) @ mins`` where
``E`` [K, K/32] sums each block of the activations (one small MatMul and a Gemm that adds it).
Attention is ``com.microsoft::GroupQueryAttention`` with rotary inside and the KV cache as
preallocated buffers that the engine binds as both past and present (updated in place, never
copied or concatenated), one valid length per row: rows of a batch need no padding.

Graph inputs (all tokens of a step flattened into rows: T = B·S):

* ``embeds`` float32 [T, H]: the token embeddings (gathered from the Q8_0 table outside the graph);
* ``qkv_shape`` int64 [3] = [B, S, (heads + 2·kv_heads)·head_dim];
* ``seqlens_k`` int32 [B]: per row, its valid length after this step minus one;
* ``total_sequence_length`` int32 []: the longest row's length after this step;
* ``logits_index`` int64 [K]: the rows of T whose logits are wanted;
* ``past_key.{i}`` / ``past_value.{i}`` [B, kv_heads, capacity, head_dim], float16 (``kv_fp16``) or float32.

Outputs: ``logits`` float32 [K, V]; ``present_key.{i}`` / ``present_value.{i}`` (the same buffers).

``accuracy_level`` 4 lets MatMulNBits quantize activations to int8 per block (what llama.cpp does for
Q4_1 x Q8_1); 0 keeps them float32. The README and ``tests/test_gguf_engine.py`` give the quality of each.

LoRA (``lora=True``): each projection group (``qkv``, ``o``, ``gate_up``, ``down``) of every layer also adds
``((x @ A) * lora_scale.<group>) @ B``. ``A`` [K, R] and ``B`` [R, N] are graph inputs holding every loaded
adapter side by side along R (B block-diagonal over a fused group's outputs), and ``lora_scale.<group>``
[T, R] gives each row its own adapter's alpha/r in that adapter's columns and 0 elsewhere, so rows of one
batch use different adapters (or none) exactly, and adapters load and unload without rebuilding the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genai_inference.gguf_weights import BLOCK, GgufModel, LlamaShape, Packed

OPSET = 21
IR_VERSION = 10  # what onnxruntime 1.31 reads (onnx 1.23 would write 14)
MS = "com.microsoft"
# The projection groups of a layer (projections that read the same input run as one MatMulNBits).
GROUPS = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
          "down": ("down_proj",)}


def past_names(layers: int) -> list[str]:
    return [f"past_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]


def lora_names(layers: int) -> list[str]:
    return [f"lora_{ab}.{i}.{g}" for i in range(layers) for g in GROUPS for ab in ("A", "B")]


def group_widths(s: LlamaShape) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Per group: the input width K and the output width of each projection in it."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    return {"qkv": (s.hidden, (q, kv, kv)), "o": (q, (s.hidden,)), "gate_up": (s.hidden, (s.ffn, s.ffn)),
            "down": (s.ffn, (s.hidden,))}


def rotary_cache(shape: LlamaShape) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [context, head_dim/2] computed as transformers' Llama rotary does (float32 throughout)."""
    exponents = np.arange(0, shape.head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(shape.head_dim)
    inv_freq = (np.float32(1.0) / (np.float32(shape.rope_base) ** exponents)).astype(np.float32)
    positions = np.arange(shape.context, dtype=np.float32)
    freqs = np.outer(positions, inv_freq).astype(np.float32)
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)


class _Builder:
    def __init__(self, accuracy_level: int) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper, self.TensorProto = helper, numpy_helper, TensorProto
        self.accuracy_level = accuracy_level
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._indicators: dict[int, str] = {}

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, *, domain: str = "",
             **attrs: object) -> list[str]:
        outs = [self.name(op) for _ in range(outputs)] if isinstance(outputs, int) else list(outputs)
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, name=self.name(f"n_{op}"), domain=domain,
                                                **attrs))
        return outs

    def block_indicator(self, k: int) -> str:
        """E [K, K/32] with E[k, k // 32] = 1: ``x @ E`` are the per-block sums of x."""
        if k not in self._indicators:
            e = np.zeros((k, k // BLOCK), dtype=np.float32)
            e[np.arange(k), np.arange(k) // BLOCK] = 1.0
            self._indicators[k] = self.const(f"block_sum_{k}", e)
        return self._indicators[k]

    def linear(self, x: str, w: Packed, prefix: str, out: str | None = None) -> str:
        if w.bits == 8 and self.accuracy_level == 0:
            # MatMulNBits' float path for 8-bit blocks is ~80x slower than a float32 MatMul on the same
            # (exact: d·q is representable) values; this graph is the exact reference, memory is not its point.
            weight = self.const(f"{prefix}.weight", np.ascontiguousarray(w.dequantize().T))
            return self.node("MatMul", [x, weight], [out] if out else 1)[0]
        ins = [x, self.const(f"{prefix}.q", w.data), self.const(f"{prefix}.scales", w.scales.reshape(-1))]
        attrs = {"K": w.k, "N": w.n, "bits": w.bits, "block_size": BLOCK, "accuracy_level": self.accuracy_level}
        if w.mins is None:
            return self.node("MatMulNBits", ins, [out] if out else 1, domain=MS, **attrs)[0]
        (y,) = self.node("MatMulNBits", ins, domain=MS, **attrs)
        (sums,) = self.node("MatMul", [x, self.block_indicator(w.k)])
        return self.node("Gemm", [sums, self.const(f"{prefix}.mins", w.mins), y], [out] if out else 1)[0]

    def lora(self, x: str, y: str, layer: int, group: str) -> str:
        (down,) = self.node("MatMul", [x, f"lora_A.{layer}.{group}"])
        (scaled,) = self.node("Mul", [down, f"lora_scale.{group}"])
        (up,) = self.node("MatMul", [scaled, f"lora_B.{layer}.{group}"])
        return self.node("Add", [y, up])[0]


def _concat(parts: Sequence[Packed]) -> Packed:
    """Projections that read the same input (q,k,v; gate,up) as one MatMulNBits: blocks run along K,
    so stacking output rows is exact."""
    mins = None if parts[0].mins is None else np.concatenate([p.mins for p in parts], axis=1)  # type: ignore[misc]
    return Packed(np.concatenate([p.data for p in parts]), np.concatenate([p.scales for p in parts]), mins,
                  parts[0].bits, parts[0].kind)


def build(model: GgufModel, *, accuracy_level: int = 4, lora: bool = False, kv_fp16: bool = False) -> object:
    """The ONNX ModelProto (weights inside; ~100 MB for SmolLM2-135M).

    ``kv_fp16``: attention runs on float16 queries, keys and values and the KV cache holds float16 (half the
    memory per token, as llama.cpp keeps it); the projections around it stay float32."""
    from onnx import TensorProto, helper

    s = model.shape
    b = _Builder(accuracy_level)
    cos, sin = rotary_cache(s)
    kv_type = np.float16 if kv_fp16 else np.float32
    cos_name, sin_name = b.const("cos_cache", cos.astype(kv_type)), b.const("sin_cache", sin.astype(kv_type))
    shape_out = b.const("attn_out_shape", np.array([-1, s.heads * s.head_dim], dtype=np.int64))
    split = b.const("gate_up_split", np.array([s.ffn, s.ffn], dtype=np.int64))

    def proj(x: str, w: Packed, layer: int, group: str) -> str:
        y = b.linear(x, w, f"l{layer}.{group}")
        return b.lora(x, y, layer, group) if lora else y

    x = "embeds"
    residual_in: str | None = None
    for i in range(s.layers):
        prefix = f"blk.{i}"
        attn_norm = b.const(f"{prefix}.attn_norm", model.vector(f"{prefix}.attn_norm.weight"))
        if residual_in is None:
            (h,) = b.node("SimplifiedLayerNormalization", [x, attn_norm], epsilon=s.rms_eps, axis=-1, stash_type=1)
        else:
            h, _, _, x = b.node("SkipSimplifiedLayerNormalization", [x, residual_in, attn_norm], 4, domain=MS,
                                epsilon=s.rms_eps)
        qkv_w = _concat([
            model.matrix(f"{prefix}.attn_q.weight", unpermute_heads=s.heads),
            model.matrix(f"{prefix}.attn_k.weight", unpermute_heads=s.kv_heads),
            model.matrix(f"{prefix}.attn_v.weight"),
        ])
        (qkv3,) = b.node("Reshape", [proj(h, qkv_w, i, "qkv"), "qkv_shape"])
        if kv_fp16:
            (qkv3,) = b.node("Cast", [qkv3], to=TensorProto.FLOAT16)
        attn, _, _ = b.node(
            "GroupQueryAttention",
            [qkv3, "", "", f"past_key.{i}", f"past_value.{i}", "seqlens_k", "total_sequence_length", cos_name, sin_name],
            [b.name("attn"), f"present_key.{i}", f"present_value.{i}"], domain=MS,
            num_heads=s.heads, kv_num_heads=s.kv_heads, do_rotary=1, rotary_interleaved=0,
            scale=float(s.head_dim) ** -0.5,
        )
        if kv_fp16:
            (attn,) = b.node("Cast", [attn], to=TensorProto.FLOAT)
        (attn2,) = b.node("Reshape", [attn, shape_out])
        o = proj(attn2, model.matrix(f"{prefix}.attn_output.weight"), i, "o")
        ffn_norm = b.const(f"{prefix}.ffn_norm", model.vector(f"{prefix}.ffn_norm.weight"))
        h2, _, _, x = b.node("SkipSimplifiedLayerNormalization", [x, o, ffn_norm], 4, domain=MS, epsilon=s.rms_eps)
        gate_up_w = _concat([model.matrix(f"{prefix}.ffn_gate.weight"), model.matrix(f"{prefix}.ffn_up.weight")])
        gate, up = b.node("Split", [proj(h2, gate_up_w, i, "gate_up"), split], 2, axis=-1)
        (sig,) = b.node("Sigmoid", [gate])
        (silu,) = b.node("Mul", [gate, sig])
        (act,) = b.node("Mul", [silu, up])
        residual_in = proj(act, model.matrix(f"{prefix}.ffn_down.weight"), i, "down")
    assert residual_in is not None
    # Only the wanted rows go through the final norm and the 49k-wide head.
    (last_x,) = b.node("Gather", [x, "logits_index"], axis=0)
    (last_r,) = b.node("Gather", [residual_in, "logits_index"], axis=0)
    out_norm = b.const("output_norm", model.vector("output_norm.weight"))
    normed, _, _, _ = b.node("SkipSimplifiedLayerNormalization", [last_x, last_r, out_norm], 4, domain=MS,
                             epsilon=s.rms_eps)
    head = model.matrix("token_embd.weight" if s.tied_embeddings else "output.weight")
    b.linear(normed, head, "lm_head", out="logits")

    f32, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
    kv_elem = TensorProto.FLOAT16 if kv_fp16 else f32
    kv = ["batch", s.kv_heads, "capacity", s.head_dim]
    inputs = [
        helper.make_tensor_value_info("embeds", f32, ["tokens", s.hidden]),
        helper.make_tensor_value_info("qkv_shape", i64, [3]),
        helper.make_tensor_value_info("seqlens_k", i32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", i32, []),
        helper.make_tensor_value_info("logits_index", i64, ["kept"]),
    ]
    if lora:
        widths = group_widths(s)
        inputs += [helper.make_tensor_value_info(f"lora_scale.{g}", f32, ["tokens", f"rank_{g}"]) for g in GROUPS]
        for i in range(s.layers):
            for g, (k, outs) in widths.items():
                inputs.append(helper.make_tensor_value_info(f"lora_A.{i}.{g}", f32, [k, f"rank_{g}"]))
                inputs.append(helper.make_tensor_value_info(f"lora_B.{i}.{g}", f32, [f"rank_{g}", sum(outs)]))
    inputs += [helper.make_tensor_value_info(n, kv_elem, kv) for n in past_names(s.layers)]
    outputs = [helper.make_tensor_value_info("logits", f32, ["kept", s.vocab])]
    outputs += [helper.make_tensor_value_info(n, kv_elem, kv) for n in present_names(s.layers)]
    graph = helper.make_graph(b.nodes, "gguf_llama", inputs, outputs, b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
                             producer_name="genai_inference.quantized_graph", ir_version=IR_VERSION)
