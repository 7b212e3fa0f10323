"""The onnxruntime-gguf engine: the GGUF's own Q4_1/Q8_0 weights, exactly, against the fp32 torch model.

* the repacked blocks dequantize to exactly what gguf-py (and transformers' fp32 conversion) read;
* with float32 activations (accuracy level 0) the graph gives the fp32 model's logits (float rounding);
* with int8 activations (level 4, the default) quality stays within the bound of issue 13;
* rows of a batch are independent (join, leave, repeat), chunked prefills and restored prefixes equal
  whole prefills, and LoRA adapters on the quantized base match PEFT on the fp32 model.

The bookkeeping checks run on the float32-activation engine: with int8 activations a forward over one
row and one over many round the activations of later layers differently (a difference of 1e-7 flips an
int8 rounding, then grows), so logits agree there only to ~0.5, as they would between llama.cpp builds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from genai_core.errors import AlreadyExists, InvalidArgument
from genai_inference.engines import gguf_engine
from genai_inference.gguf_weights import GgufModel
from genai_inference.models import smollm2_gguf

MODEL = "smollm2-135m-instruct"
# A few paragraphs written for this test (English prose and arithmetic, like the benchmark's GSM8K text).
TEXT = (
    "Question: A baker makes 24 loaves of bread every morning. She sells three quarters of them before noon "
    "and gives away 2 of the rest to a neighbour. How many loaves are left at the end of the day?\n"
    "Answer: She sells 24 * 3 / 4 = 18 loaves before noon. That leaves 24 - 18 = 6 loaves. After giving 2 away, "
    "6 - 2 = 4 loaves are left. #### 4\n\n"
    "Question: A train travels 60 miles in the first hour and 45 miles in the second hour. What is its average "
    "speed over the two hours?\nAnswer: In two hours it travels 60 + 45 = 105 miles. Its average speed is "
    "105 / 2 = 52.5 miles per hour. #### 52.5\n\n"
    "The river rose slowly through the night, and by morning the lower fields were under water. The farmers "
    "moved their animals to the hill behind the village, where the old chapel stood, and waited for the rain "
    "to stop. Nobody in the village could remember a flood like it, although the oldest stories spoke of one."
)


@pytest.fixture(scope="session")
def prompts(tokenizer, chat_text) -> list[list[int]]:
    questions = ["What is the capital of France?", "Write a haiku about the sea.", "Name three prime numbers."]
    return [tokenizer(chat_text(q), add_special_tokens=False).input_ids for q in questions]


def greedy(engine, ids, steps: int) -> tuple[list[int], list[np.ndarray]]:
    batch = engine.new_batch()
    logits, row = engine.prefill(ids)
    batch.extend(row)
    tokens, seen = [int(logits[0].argmax())], [logits[0].copy()]
    while len(tokens) < steps:
        logits = engine.decode(batch, np.array([tokens[-1]]), [None])
        tokens.append(int(logits[0].argmax()))
        seen.append(logits[0].copy())
    return tokens, seen


@pytest.fixture(scope="session")
def singles(exact, prompts) -> list[tuple[list[int], list[np.ndarray]]]:
    return [greedy(exact, ids, 8) for ids in prompts]


# -- the weights ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_repacked_blocks_are_the_gguf_weights_exactly(source):
    """Every quantized tensor, repacked for MatMulNBits, dequantizes to gguf-py's values bit for bit; the
    query/key rows put back in Hugging Face order equal transformers' own conversion of the GGUF."""
    from safetensors.numpy import load_file

    model = GgufModel(smollm2_gguf())
    hf = load_file(str(next(source.directory.glob("*.safetensors"))))
    checked = 0
    for name in (t.name for t in model._reader.tensors):
        if model.kind(name) in ("Q4_0", "Q4_1", "Q8_0"):
            np.testing.assert_array_equal(model.matrix(name).dequantize(), model.reference(name), err_msg=name)
            checked += 1
    assert checked == 211  # 30 layers x 7 projections + the Q8_0 embedding
    s = model.shape
    for layer in range(s.layers):
        for short, hf_name, heads in (("q", "q_proj", s.heads), ("k", "k_proj", s.kv_heads)):
            got = model.matrix(f"blk.{layer}.attn_{short}.weight", unpermute_heads=heads).dequantize()
            np.testing.assert_array_equal(got, hf[f"model.layers.{layer}.self_attn.{hf_name}.weight"])


def test_engine_info(fast, gguf_source):
    info = fast.info
    assert (info.engine, info.quantization, info.vocab_size, info.context_length) == (
        "onnxruntime-gguf", "Q4_1", 49152, 8192)
    assert info.revision == gguf_source.revision and info.has_chat_template
    assert fast.eos_token_ids == frozenset({2})
    assert fast.supports_adapters


# -- quality ----------------------------------------------------------------------------------------------


def _perplexity(logits: np.ndarray, ids: list[int]) -> float:
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
    chosen = logits[np.arange(len(ids) - 1), ids[1:]] - logsumexp[:-1]
    return math.exp(-chosen.mean())


@pytest.fixture(scope="session")
def text_ids(tokenizer) -> list[int]:
    return tokenizer(TEXT, add_special_tokens=False).input_ids


@pytest.fixture(scope="session")
def fp32_logits(engine, text_ids) -> np.ndarray:
    logits, _ = engine.prefill(text_ids, all_logits=True)  # the torch engine: transformers in fp32
    return logits.copy()


def test_float32_activations_give_the_fp32_models_logits(exact, fp32_logits, text_ids):
    logits, _ = exact.prefill(text_ids, all_logits=True)
    assert np.abs(logits - fp32_logits).max() < 2e-3
    assert (logits.argmax(-1) == fp32_logits.argmax(-1)).all()


def test_int8_activations_stay_within_the_quality_bound(fast, fp32_logits, text_ids):
    """Issue 13's bound is perplexity <= 1.01x fp32 on the benchmark's 1,024 GSM8K tokens (measured there);
    on this short text the same kind of check, with a little room for its 250 tokens."""
    logits, _ = fast.prefill(text_ids, all_logits=True)
    ratio = _perplexity(logits, text_ids) / _perplexity(fp32_logits, text_ids)
    agreement = float((logits.argmax(-1) == fp32_logits.argmax(-1)).mean())
    assert ratio <= 1.02, ratio
    assert agreement >= 0.93, agreement


# -- rows of a batch ------------------------------------------------------------------------------------


def test_chunked_prefill_equals_whole(exact, prompts, monkeypatch):
    ids = prompts[1]
    whole, _ = exact.prefill(ids, all_logits=True)
    whole = whole.copy()
    monkeypatch.setattr(gguf_engine, "PREFILL_CHUNK", 7)
    chunked, _ = exact.prefill(ids, all_logits=True)
    np.testing.assert_allclose(chunked, whole, atol=1e-3, rtol=0)


def test_prefill_chunks_leave_no_lone_last_token(monkeypatch):
    monkeypatch.setattr(gguf_engine, "PREFILL_CHUNK", 64)
    assert gguf_engine.chunks(1) == [(0, 1)]
    assert gguf_engine.chunks(64) == [(0, 64)]
    assert gguf_engine.chunks(65) == [(0, 63), (63, 65)]  # not 64 + a one-token forward (MatMulNBits' M=1 path)
    assert gguf_engine.chunks(130) == [(0, 64), (64, 128), (128, 130)]
    assert gguf_engine.chunks(129) == [(0, 64), (64, 127), (127, 129)]


def test_batched_decode_matches_single(exact, prompts, singles):
    batch = exact.new_batch()
    tokens = []
    for ids in prompts:
        logits, row = exact.prefill(ids)
        batch.extend(row)
        tokens.append([int(logits[0].argmax())])
    for step in range(1, 8):
        logits = exact.decode(batch, np.array([t[-1] for t in tokens]), [None] * 3)
        for r in range(3):
            np.testing.assert_allclose(logits[r], singles[r][1][step], atol=1e-3, rtol=0)
            tokens[r].append(int(logits[r].argmax()))
    assert tokens == [t for t, _ in singles]


def test_rows_leave_and_join(exact, prompts, singles):
    """Row 0 leaves after 4 steps (the last row takes its slot), prompt 2 joins after 2; the rest go on."""
    expected = [t for t, _ in singles]
    batch = exact.new_batch()
    rows: dict[int, list[int]] = {}
    order: list[int] = []
    for r in (0, 1):
        logits, row = exact.prefill(prompts[r])
        batch.extend(row)
        rows[r], order = [int(logits[0].argmax())], [*order, r]
    for step in range(1, 8):
        if step == 2:
            logits, row = exact.prefill(prompts[2])
            batch.extend(row)
            rows[2], order = [int(logits[0].argmax())], [*order, 2]
        if step == 4:
            batch.select([2, 1])  # what the scheduler's retire does: the last row fills the hole
            order = [order[2], order[1]]
        logits = exact.decode(batch, np.array([rows[r][-1] for r in order]), [None] * len(order))
        for i, r in enumerate(order):
            rows[r].append(int(logits[i].argmax()))
    assert rows[0] == expected[0][:4]
    assert rows[1] == expected[1]
    assert rows[2] == expected[2][: len(rows[2])]


def test_rows_keep_their_keys_and_values_when_the_buffers_grow(exact, prompts, singles, monkeypatch):
    """KV slots hold the longest row rounded up to a power of two: a long prompt joining mid-decode grows every
    slot (the held rows copied over), and an empty batch goes back to the smallest buffers."""
    long_ids = prompts[2] * 4
    expected_long, _ = greedy(exact, long_ids, 4)
    monkeypatch.setattr(gguf_engine, "MIN_CAPACITY", 8)
    batch = exact.new_batch()
    assert batch.capacity == 8
    logits, row = exact.prefill(prompts[0])
    batch.extend(row)
    rows, order = {0: [int(logits[0].argmax())]}, [0]
    held_capacity = batch.capacity
    assert len(prompts[0]) <= held_capacity < 2 * len(prompts[0])
    for step in range(1, 8):
        if step == 2:
            logits, row = exact.prefill(long_ids)
            batch.extend(row)
            rows[1], order = [int(logits[0].argmax())], [0, 1]
            assert batch.capacity >= len(long_ids) > held_capacity
        logits = exact.decode(batch, np.array([rows[r][-1] for r in order]), [None] * len(order))
        for i, r in enumerate(order):
            rows[r].append(int(logits[i].argmax()))
    assert rows[0] == singles[0][0]
    assert rows[1][:4] == expected_long
    batch.select([])
    assert batch.capacity == 8


def test_repeated_row_is_identical(exact, prompts, singles):
    batch = exact.new_batch()
    logits, row = exact.prefill(prompts[0])
    row.select([0, 0, 0])
    batch.extend(row)
    token = int(logits[0].argmax())
    step = exact.decode(batch, np.array([token] * 3), [None] * 3)
    np.testing.assert_array_equal(step[0], step[2])
    np.testing.assert_allclose(step[1], singles[0][1][1], atol=1e-3, rtol=0)


def test_restored_prefix_continues_like_the_whole_prompt(exact, prompts):
    ids = prompts[2]
    whole, _ = exact.prefill(ids, all_logits=True)
    whole = whole.copy()
    _, row = exact.prefill(ids[:32])
    pieces = [exact.snapshot(row, 0, 16), exact.snapshot(row, 16, 32)]
    assert pieces[0].nbytes == 16 * exact.shape.kv_bytes_per_token
    restored = exact.restore(pieces, 31)
    rest, _ = exact.prefill(ids[31:], past=restored, all_logits=True)
    np.testing.assert_allclose(rest, whole[31:], atol=1e-3, rtol=0)


# -- LoRA on the quantized base ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peft_logits(source, adapters_dir, lora_path, prompts) -> np.ndarray:
    """The reference: PEFT's adapter on the fp32 transformers model, its own forward."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapters_dir / lora_path)).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompts[0]])).logits[0].numpy().copy()


def test_lora_on_the_quantized_base_matches_peft(exact, peft_logits, prompts, adapters_dir, lora_path):
    base, _ = exact.prefill(prompts[0], all_logits=True)
    base = base.copy()
    exact.load_adapter("rand", adapters_dir / lora_path)
    try:
        assert set(exact.adapters) == {"rand"}
        adapted, _ = exact.prefill(prompts[0], adapter="rand", all_logits=True)
        assert np.abs(adapted - peft_logits).max() < 2e-3
        assert np.abs(adapted - base).max() > 0.1  # the adapter really changes the output
        again, _ = exact.prefill(prompts[0], all_logits=True)  # base rows are untouched by a loaded adapter
        np.testing.assert_allclose(again, base, atol=1e-5, rtol=0)
        with pytest.raises(AlreadyExists):
            exact.load_adapter("rand", adapters_dir / lora_path)
    finally:
        exact.unload_adapter("rand")
    assert not exact.adapters and exact._lora_session is None


def test_lora_on_the_default_engine_agrees_with_peft(fast, peft_logits, prompts, adapters_dir, lora_path):
    """With int8 activations the adapted logits sit close to PEFT's, far closer than the base model's."""
    base, _ = fast.prefill(prompts[0], all_logits=True)
    base = base.copy()
    fast.load_adapter("rand", adapters_dir / lora_path)
    try:
        adapted, _ = fast.prefill(prompts[0], adapter="rand", all_logits=True)
    finally:
        fast.unload_adapter("rand")
    off_adapted = float(np.abs(adapted - peft_logits).mean())
    off_base = float(np.abs(base - peft_logits).mean())
    assert off_adapted < 0.2 * off_base, (off_adapted, off_base)


def test_mixed_batch_of_adapters_and_base(exact, prompts, adapters_dir, lora_path, second_lora_path):
    """Two adapters and the base model in one decode step: each row equals that row decoded alone."""
    exact.load_adapter("a", adapters_dir / lora_path)
    exact.load_adapter("b", adapters_dir / second_lora_path)
    try:
        names = ["a", None, "b"]
        alone = []
        for ids, name in zip(prompts, names, strict=True):
            batch = exact.new_batch()
            logits, row = exact.prefill(ids, adapter=name)
            batch.extend(row)
            token = int(logits[0].argmax())
            step = exact.decode(batch, np.array([token]), [name])
            alone.append((token, step[0].copy()))
        batch = exact.new_batch()
        for ids, name in zip(prompts, names, strict=True):
            _, row = exact.prefill(ids, adapter=name)
            batch.extend(row)
        step = exact.decode(batch, np.array([t for t, _ in alone]), names)
        for r in range(3):
            np.testing.assert_allclose(step[r], alone[r][1], atol=1e-3, rtol=0)
        assert np.abs(alone[0][1] - alone[2][1]).max() > 0.1
    finally:
        exact.unload_adapter("a")
        exact.unload_adapter("b")


def test_adapters_that_cannot_be_served_are_refused(fast, tmp_path: Path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "use_dora": true}')
    with pytest.raises(InvalidArgument, match="DoRA"):
        fast.load_adapter("dora", tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    with pytest.raises(InvalidArgument, match="safetensors"):
        fast.load_adapter("no-weights", tmp_path)
    assert not fast.adapters
