"""A llama-family GGUF read as it is: its shape, and its quantized tensors repacked (not requantized)
into the layout of ONNX Runtime's ``com.microsoft::MatMulNBits``.

Exactness: a GGUF block of 32 weights is ``w = d·q + m`` (Q4_1: 4-bit ``q``, fp16 ``d`` and ``m``),
``w = d·(q − 8)`` (Q4_0) or ``w = d·q`` (Q8_0: signed 8-bit ``q``). MatMulNBits without a zero-point
input computes ``Σ d·(q − 8)·x`` (4-bit) or ``Σ d·(q − 128)·x`` (8-bit), so Q4_0 and Q8_0 (stored as
``q + 128``) map directly, and Q4_1 adds a correction ``Σ_blocks (m + 8d)·(Σ_block x)``: a [K/32, N]
matrix of ``m + 8d`` times the per-block sums of the activations. All three reproduce the dequantized
weights exactly (``tests/test_gguf_engine.py`` checks). Explicit uint8 zero points would also be exact,
but measured on ORT 1.31 their int8-activation kernel quantizes activations 2.3x more coarsely
(relative error 2.3e-2 vs 1.0e-2, the same as per-32-block Q8 quantization without them).

Llama GGUFs store the query and key rows permuted for llama.cpp's interleaved rotary embedding;
they are put back in Hugging Face order here, so the graph uses the usual rotate-half rotary and
LoRA adapters trained on the HF model apply as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 32  # weights per quantization block (Q4_0/Q4_1/Q8_0)

# GGML type ids (gguf.GGMLQuantizationType); only these are read without dequantizing.
F32, F16, Q4_0, Q4_1, Q8_0 = 0, 1, 2, 3, 8
SUPPORTED = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q8_0: "Q8_0"}


@dataclass(frozen=True)
class LlamaShape:
    """What the graph needs to know about the model, from the GGUF's metadata."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    rms_eps: float
    rope_base: float
    tied_embeddings: bool
    file_type: str = ""  # the GGUF's general.file_type (its main quantization), e.g. "Q4_1"

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * 4  # float32 keys and values


@dataclass(frozen=True)
class Packed:
    """One weight matrix [N out, K in] in MatMulNBits layout (default zero point: 8 for 4-bit, 128 for 8-bit).

    ``data`` uint8 [N, K/32, 32·bits/8]; ``scales`` float32 [N, K/32]; ``mins`` float32 [K/32, N] (Q4_1's
    ``m + 8d``, added as ``blocksum(x) @ mins``) or None.
    """

    data: np.ndarray
    scales: np.ndarray
    mins: np.ndarray | None
    bits: int
    kind: str

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def k(self) -> int:
        return int(self.data.shape[1]) * BLOCK

    def dequantize(self) -> np.ndarray:
        """float32 [N, K] (tests and references only; the engine never materialises this)."""
        if self.bits == 4:
            q = np.stack([self.data & 0x0F, self.data >> 4], axis=-1).reshape(self.n, -1, BLOCK).astype(np.float32)
            zero = 8.0
        else:
            q, zero = self.data.astype(np.float32), 128.0
        w = (q - zero) * self.scales[..., None]
        if self.mins is not None:
            w = w + self.mins.T[..., None]
        return w.reshape(self.n, self.k)


def _f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)[..., 0]


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """[..., 32] values 0..15 in order -> [..., 16] bytes, element 2i in the low nibble of byte i."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _q4(raw: np.ndarray, with_min: bool) -> Packed:
    """GGUF Q4_0 (18-byte blocks: d, 16 bytes) / Q4_1 (20-byte blocks: d, m, 16 bytes).

    A GGUF block keeps element j in the low nibble and element j+16 in the high nibble of byte j."""
    n = raw.shape[0]
    size = 20 if with_min else 18
    blocks = raw.reshape(n, -1, size)
    d = _f16(blocks[..., 0:2])
    qs = blocks[..., size - 16:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [N, KB, 32] in element order
    if not with_min:
        return Packed(_pack_nibbles(q), d, None, 4, "Q4_0")
    mins = _f16(blocks[..., 2:4]) + np.float32(8.0) * d  # d·q + m = d·(q − 8) + (m + 8d)
    return Packed(_pack_nibbles(q), d, np.ascontiguousarray(mins.T), 4, "Q4_1")


def _q8_0(raw: np.ndarray) -> Packed:
    """GGUF Q8_0 (34-byte blocks: d, 32 signed bytes) as unsigned bytes q + 128 (the default zero point)."""
    n = raw.shape[0]
    blocks = raw.reshape(n, -1, 34)
    d = _f16(blocks[..., 0:2])
    q = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return Packed(np.ascontiguousarray(q), d, None, 8, "Q8_0")


def _unpermute_rows(raw: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's query/key row permutation (interleaved rotary -> Hugging Face's rotate-half)."""
    n = raw.shape[0]
    half = n // heads // 2
    return raw.reshape(heads, half, 2, *raw.shape[1:]).swapaxes(1, 2).reshape(raw.shape)


class GgufModel:
    """The GGUF file, memory-mapped: metadata and tensors on demand."""

    def __init__(self, path: Path) -> None:
        from gguf import GGUFReader

        self.path = Path(path)
        self._reader = GGUFReader(self.path)
        self._tensors = {t.name: t for t in self._reader.tensors}
        arch = self.string("general.architecture")
        if arch not in ("llama",):
            raise ValueError(f"{self.path.name}: architecture {arch!r} is not served by the gguf engine (llama only)")
        heads = self.number(f"{arch}.attention.head_count")
        hidden = self.number(f"{arch}.embedding_length")
        embed = self._tensors["token_embd.weight"]
        self.shape = LlamaShape(
            layers=self.number(f"{arch}.block_count"),
            hidden=hidden,
            heads=heads,
            kv_heads=self.number(f"{arch}.attention.head_count_kv", heads),
            head_dim=self.number(f"{arch}.rope.dimension_count", hidden // heads),
            ffn=self.number(f"{arch}.feed_forward_length"),
            vocab=int(embed.shape[1]),
            context=self.number(f"{arch}.context_length"),
            rms_eps=float(self._field(f"{arch}.attention.layer_norm_rms_epsilon")),
            rope_base=float(self._field(f"{arch}.rope.freq_base", 10000.0)),
            tied_embeddings="output.weight" not in self._tensors,
            file_type=self.file_type(),
        )

    def _field(self, key: str, default: object = None) -> object:
        field = self._reader.fields.get(key)
        if field is None:
            if default is None:
                raise KeyError(f"{self.path.name} has no {key}")
            return default
        return field.parts[-1][0]

    def number(self, key: str, default: int | None = None) -> int:
        return int(self._field(key, default))  # type: ignore[arg-type]

    def string(self, key: str) -> str:
        return bytes(self._reader.fields[key].parts[-1]).decode()

    def file_type(self) -> str:
        names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0"}
        code = self.number("general.file_type", -1)
        return names.get(code, f"file_type {code}")

    def kind(self, name: str) -> str:
        t = self._tensors[name]
        code = int(t.tensor_type)
        if code not in SUPPORTED:
            raise ValueError(f"{name} is {t.tensor_type.name}; the gguf engine serves {sorted(SUPPORTED.values())}")
        return SUPPORTED[code]

    def vector(self, name: str) -> np.ndarray:
        """A float32 1-D tensor (norm weights)."""
        t = self._tensors[name]
        return np.asarray(t.data, dtype=np.float32).reshape(-1).copy()

    def matrix(self, name: str, *, unpermute_heads: int = 0) -> Packed:
        """A 2-D weight [N, K] as MatMulNBits takes it (F32/F16 rows are quantized by nobody: not supported)."""
        t = self._tensors[name]
        raw = np.asarray(t.data)
        if unpermute_heads:
            raw = _unpermute_rows(raw, unpermute_heads)
        kind = self.kind(name)
        if kind == "Q4_1":
            return _q4(raw, with_min=True)
        if kind == "Q4_0":
            return _q4(raw, with_min=False)
        if kind == "Q8_0":
            return _q8_0(raw)
        raise ValueError(f"{name} is {kind}; the gguf engine serves Q4_0, Q4_1 and Q8_0 matrices")

    def embedding_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The token embedding as (int8 [V, H], float32 scales [V, H/32]) for a gather outside the graph."""
        name = "token_embd.weight"
        if self.kind(name) != "Q8_0":
            raise ValueError(f"{name} is {self.kind(name)}; the gguf engine expects a Q8_0 embedding")
        raw = np.asarray(self._tensors[name].data)
        blocks = raw.reshape(raw.shape[0], -1, 34)
        return np.ascontiguousarray(blocks[..., 2:].view(np.int8)).reshape(raw.shape[0], -1), _f16(blocks[..., 0:2])

    def reference(self, name: str) -> np.ndarray:
        """The dequantized tensor as gguf-py computes it (tests compare against this)."""
        from gguf.quants import dequantize

        t = self._tensors[name]
        return dequantize(np.asarray(t.data), t.tensor_type)


def embed(rows: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """float32 [len(ids), H]: Q8_0 rows dequantized exactly (d·q)."""
    q, d = rows
    picked = q[ids].astype(np.float32).reshape(len(ids), -1, BLOCK)
    return (picked * d[ids][..., None]).reshape(len(ids), -1)
