"""Quantization jobs: the base model, a full fine-tune, or a LoRA adapter merged into its base (one request takes
an adapter to a production file), written in a quantized format and measured against its fp32 weights on the
dataset's text (perplexity, and speed in the runtime that reads the format):

* ``gguf-q8_0`` / ``gguf-q4_1``: the ``gguf`` package's writer and quantizer (``ggufwriter``). Perplexity is read
  through transformers' GGUF loader, which dequantizes: the quantized values exactly. The runtime here for speed
  is that dequantized torch model (llama.cpp and the inference service's GGUF engine read the file natively);
* ``onnx-int8`` / ``onnx-int4``: the model exported to ONNX (logits over a whole sequence) and quantized by
  onnxruntime (``quantize_dynamic`` QInt8 per channel; ``MatMulNBitsQuantizer`` 4-bit blocks of 32); speed is the
  tokens/s of scoring the text in onnxruntime against the fp32 export.

The artifact holds the quantized file(s), the tokenizer, and ``genai_quantization.json`` with the measures; the
inference service serves GGUF artifacts through its GGUF path and ONNX ones with its onnxruntime engine.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import QuantizeConfig
from genai_finetune.methods import method
from genai_finetune.recipes.blocks import token_stream
from genai_finetune.recipes.common import prepare
from genai_finetune.types import JobState, Level, Metrics, Outcome

MANIFEST = "genai_quantization.json"


def merged_model(context: RecipeContext, config: QuantizeConfig):
    """The fp32 model to quantize: the base, a full fine-tune's weights, or the base with a LoRA merged in."""
    if config.source_kind == "model":
        return AutoModelForCausalLM.from_pretrained(config.source_path, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(context.spec.base_model_dir, dtype=torch.float32)
    if config.source_kind == "adapter":
        from peft import PeftModel

        return PeftModel.from_pretrained(base, config.source_path).merge_and_unload()
    return base


def _perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    logits = logits[0, :-1].astype(np.float64)
    targets = ids[0, 1:]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(math.exp(-log_probs[np.arange(len(targets)), targets].mean()))


def _timed(run, repeats: int = 3) -> tuple[np.ndarray, float]:
    """The output of ``run`` and its best time of ``repeats``."""
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return out, best


def _torch_measure(model, ids: np.ndarray) -> tuple[float, float]:
    tensor = torch.from_numpy(ids)
    with torch.no_grad():
        logits, seconds = _timed(lambda: model(input_ids=tensor).logits.numpy())
    return _perplexity(logits, ids), ids.shape[1] / seconds


def _gguf(model_dir: Path, output: Path, qtype: str, ids: np.ndarray) -> dict:
    from genai_finetune.ggufwriter import write_llama

    written = write_llama(model_dir, output / "model.gguf", qtype)
    quantized = AutoModelForCausalLM.from_pretrained(str(output), gguf_file="model.gguf", dtype=torch.float32)
    ppl, speed = _torch_measure(quantized, ids)
    return {"perplexity": ppl, "tokens_per_second": speed, "runtime": "torch (GGUF dequantized)",
            "size_bytes": written.size_bytes, "quantized_tensors": written.quantized, "kept_tensors": written.kept}


class _Logits(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        # A ready 4-D additive causal mask and explicit positions: transformers' own mask building uses operators
        # (aten::diff) the ONNX exporter cannot write.
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device)
        blocked = positions[None, :] > positions[:, None]
        mask = torch.zeros(seq, seq).masked_fill(blocked, torch.finfo(torch.float32).min)[None, None]
        return self.model(input_ids=input_ids, attention_mask=mask.expand(input_ids.shape[0], 1, seq, seq),
                          position_ids=positions[None].expand(input_ids.shape[0], seq), use_cache=False).logits


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx(model, work: Path, output: Path, bits: int, ids: np.ndarray, threads: int) -> dict:
    import onnx

    fp32 = work / "fp32" / "model.onnx"
    fp32.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(_Logits(model).eval(), (torch.from_numpy(ids),), str(fp32), dynamo=False, opset_version=17,
                      input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}})
    target = output / "model.onnx"
    if bits == 8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), block_size=32, is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    feeds = {"input_ids": ids}
    reference, reference_s = _timed(lambda: _onnx_session(fp32, threads).run(None, feeds)[0], 1)
    session = _onnx_session(target, threads)
    logits, seconds = _timed(lambda: session.run(None, feeds)[0])
    fp32_session = _onnx_session(fp32, threads)
    _, fp32_seconds = _timed(lambda: fp32_session.run(None, feeds)[0])
    return {"perplexity": _perplexity(logits, ids), "tokens_per_second": ids.shape[1] / seconds,
            "runtime": "onnxruntime", "fp32_onnx_tokens_per_second": ids.shape[1] / fp32_seconds,
            "fp32_onnx_perplexity": _perplexity(reference, ids), "size_bytes": target.stat().st_size}


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    config, spec = context.config, context.spec
    assert isinstance(config, QuantizeConfig)
    chosen = method(spec.method)
    reporter = context.reporter
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model_dir if config.source_kind != "model"
                                              else config.source_path)
    stream = token_stream(tokenizer, [r["text"] for r in context.train_records], tokenizer.eos_token_id)
    ids = np.array([stream[:config.eval_tokens]], dtype=np.int64)
    work = Path(spec.work_dir)
    merged_dir = work / "merged"
    model = merged_model(context, config).eval()
    model.save_pretrained(str(merged_dir))
    tokenizer.save_pretrained(str(merged_dir))
    fp32_ppl, fp32_speed = _torch_measure(model, ids)
    reporter.message(Level.INFO, f"fp32 ({config.source or spec.base_model}): perplexity {fp32_ppl:.3f} on "
                                 f"{ids.shape[1]} tokens, {fp32_speed:.0f} tokens/s scored with torch")
    if reporter.state() is not JobState.RUNNING:  # paused or cancelled while measuring: nothing to keep
        return None
    output = context.output_dir
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    family, _, kind = config.format.partition("-")
    if family == "gguf":
        measured = _gguf(merged_dir, output, kind.upper(), ids)
    else:
        measured = _onnx(model, work, output, 8 if kind == "int8" else 4, ids, spec.threads)
        shutil.copytree(merged_dir, output, dirs_exist_ok=True)  # the inference service exports its own KV graph
    tokenizer.save_pretrained(str(output))
    metrics = {"format": config.format, "eval_tokens": int(ids.shape[1]), "perplexity_fp32": fp32_ppl,
               "tokens_per_second_fp32_torch": fp32_speed, **{f"{k}_quantized" if k in ("perplexity",
                                                              "tokens_per_second") else k: v for k, v in measured.items()},
               "perplexity_increase": measured["perplexity"] / fp32_ppl - 1, "source": config.source or spec.base_model}
    (output / MANIFEST).write_text(json.dumps(metrics, indent=2))
    reporter.metrics(Metrics(step=1, total_steps=1), f"{config.format}: perplexity {measured['perplexity']:.3f} "
                     f"({metrics['perplexity_increase']:+.1%} over fp32), {measured['tokens_per_second']:.0f} tokens/s "
                     f"({measured['runtime']}), {measured['size_bytes'] / 2**20:.1f} MiB")
    return Outcome(chosen.kind, chosen.serving, config.format, str(output), metrics, 0)
