"""Llama-family models (SmolLM2, the decoders pretrained here, merged LoRA fine-tunes) written as GGUF files with
the ``gguf`` package's writer and quantizer, in the layout llama.cpp reads (and the inference service's GGUF
engine): ``llama.*`` hyperparameters, the byte-level BPE vocabulary and merges as ``tokenizer.ggml.*``, and the
tensors under llama.cpp's names, the query and key rows permuted for its interleaved rotary embedding.

2-D weights are quantized to the asked type (Q8_0: 8-bit, one scale per 32 weights; Q4_1: 4-bit, a scale and
a minimum per 32 weights); norms stay F32, and a weight whose rows are not a multiple of 32 stays F16. Reading
the file back with transformers' GGUF loader (which dequantizes) gives the quantized model's exact values, which
is how the perplexity cost is measured.

    >>> # written = write_llama(Path("merged"), Path("model.Q4_1.gguf"), "Q4_1")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 32
TYPES = {"Q8_0": 8, "Q4_1": 3}  # gguf.GGMLQuantizationType values
FILE_TYPES = {"Q8_0": 7, "Q4_1": 3}  # llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*)


@dataclass(frozen=True)
class Written:
    path: Path
    size_bytes: int
    quantized: int  # tensors in the asked type
    kept: int  # tensors kept in F32/F16


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotate-half query/key rows -> llama.cpp's interleaved order (per head: pairs side by side)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


_LAYER = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}


def gguf_name(name: str) -> str:
    if name in _TOP:
        return _TOP[name]
    prefix, _, rest = name.partition(".layers.")
    index, _, tail = rest.partition(".")
    if prefix != "model" or tail not in _LAYER:
        raise ValueError(f"no GGUF name for tensor {name!r}: only Llama-family models are written")
    return f"blk.{index}.{_LAYER[tail]}"


def _vocabulary(directory: Path) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) of a byte-level BPE tokenizer.json."""
    data = json.loads((directory / "tokenizer.json").read_text())
    model = data["model"]
    if model.get("type") != "BPE":
        raise ValueError("only byte-level BPE tokenizers are written to GGUF here (tokenizer.ggml.model gpt2)")
    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    vocab.update(special)
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for token, i in vocab.items():
        tokens[i] = token
    types = [3 if t in special else 1 for t in tokens]  # 3: control, 1: normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def write_llama(model_dir: Path, out: Path, qtype: str, *, name: str = "") -> Written:
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokens, types, merges = _vocabulary(model_dir)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(name or model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    rope = (config.get("rope_parameters") or {}).get("rope_theta") or config.get("rope_theta") or 10000.0
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(FILE_TYPES[qtype])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for role, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("pad", writer.add_pad_token_id)):
        value = getattr(tokenizer, f"{role}_token_id", None)
        if value is not None:
            add(int(value))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    weights: dict[str, np.ndarray] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(str(path)))
    if config.get("tie_word_embeddings"):
        weights.pop("lm_head.weight", None)
    quantized = kept = 0
    for hf_name, tensor in weights.items():
        array = np.asarray(tensor, dtype=np.float32)
        if hf_name.endswith("q_proj.weight"):
            array = _permute(array, heads)
        elif hf_name.endswith("k_proj.weight"):
            array = _permute(array, kv_heads)
        target = gguf_name(hf_name)
        if array.ndim == 1:
            writer.add_tensor(target, array)
            kept += 1
        elif array.shape[-1] % BLOCK:
            writer.add_tensor(target, array.astype(np.float16))
            kept += 1
        else:
            kind = gguf.GGMLQuantizationType(TYPES[qtype])
            writer.add_tensor(target, gguf.quants.quantize(array, kind), raw_dtype=kind)
            quantized += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Written(out, out.stat().st_size, quantized, kept)
