"""KVBatch: left padding on extend, row selection and trimming; and batched decoding through the
TorchEngine gives each row exactly the tokens it gets alone."""

from __future__ import annotations

import pytest
import torch
from genai_inference.kv import KVBatch, empty_batch

H, D, LAYERS = 2, 3, 2


def _rows(length: int, tag: float) -> KVBatch:
    """A one-row batch of ``length`` positions; entry (h, t, d) of layer i is tag + i*100 + t + 1 (never 0)."""
    layers = []
    for i in range(LAYERS):
        base = torch.arange(length, dtype=torch.float32)[None, None, :, None].expand(1, H, length, D)
        key = base + tag + i * 100 + 1
        layers.append((key.clone(), -key.clone()))
    return KVBatch.from_prefill(layers, length)


def test_from_prefill_shape():
    kv = _rows(4, 0)
    assert kv.size == 1 and kv.length == 4
    assert kv.mask.tolist() == [[1, 1, 1, 1]]
    assert kv.positions.tolist() == [4]


def test_extend_longer_row_left_pads_existing_rows():
    kv = _rows(3, 10)
    kv.extend(_rows(5, 20))
    assert kv.size == 2 and kv.length == 5
    assert kv.mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert kv.positions.tolist() == [3, 5]  # positions are per row: padding does not shift them
    for i, (key, value) in enumerate(kv.layers):
        assert key.shape == (2, H, 5, D) and value.shape == (2, H, 5, D)
        assert torch.all(key[0, :, :2] == 0) and torch.all(value[0, :, :2] == 0)  # padding on the left
        assert torch.equal(key[0, :, 2:], _rows(3, 10).layers[i][0][0])  # real keys on the right, unchanged
        assert torch.equal(value[1], _rows(5, 20).layers[i][1][0])


def test_extend_shorter_row_is_left_padded():
    kv = _rows(5, 10)
    kv.extend(_rows(2, 20))
    assert kv.mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert kv.positions.tolist() == [5, 2]
    key = kv.layers[0][0]
    assert torch.all(key[1, :, :3] == 0)
    assert torch.equal(key[1, :, 3:], _rows(2, 20).layers[0][0][0])
    assert torch.equal(key[0], _rows(5, 10).layers[0][0][0])


def test_extend_into_empty_batch_and_three_lengths():
    kv = empty_batch()
    assert kv.size == 0
    for length, tag in ((4, 1), (2, 2), (6, 3)):
        kv.extend(_rows(length, tag))
    assert kv.size == 3 and kv.length == 6
    assert kv.mask.sum(dim=1).tolist() == [4, 2, 6]
    assert kv.mask.tolist()[1] == [0, 0, 0, 0, 1, 1]
    assert kv.positions.tolist() == [4, 2, 6]


def test_extend_does_not_modify_the_other_batch():
    other = _rows(2, 5)
    before = other.layers[0][0].clone()
    kv = _rows(4, 1)
    kv.extend(other)
    assert other.length == 2 and other.mask.tolist() == [[1, 1]]
    assert torch.equal(other.layers[0][0], before)


def test_select_removes_rows_and_trims_padding():
    kv = _rows(3, 10)
    kv.extend(_rows(6, 20))
    kv.extend(_rows(4, 30))
    kv.select([0, 2])  # the longest row leaves: two leading columns are padding in every remaining row
    assert kv.size == 2 and kv.length == 4
    assert kv.mask.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    assert kv.positions.tolist() == [3, 4]
    for i, (key, value) in enumerate(kv.layers):
        assert key.shape == (2, H, 4, D)
        assert torch.equal(key[0, :, 1:], _rows(3, 10).layers[i][0][0])
        assert torch.equal(value[1], _rows(4, 30).layers[i][1][0])
        assert key.is_contiguous()


def test_select_reorders_and_clones_rows():
    kv = _rows(3, 10)
    kv.extend(_rows(2, 20))
    kv.select([1, 1, 0])
    assert kv.size == 3
    assert kv.positions.tolist() == [2, 2, 3]
    key = kv.layers[0][0]
    assert torch.equal(key[0], key[1])
    key[0].fill_(99.0)  # a clone, not a view: the copy is untouched
    assert not torch.equal(key[0], key[1])
    assert kv.mask.tolist() == [[0, 1, 1], [0, 1, 1], [1, 1, 1]]


def test_select_nothing_leaves_an_empty_batch_that_can_be_extended():
    kv = _rows(3, 10)
    kv.select([])
    assert kv.size == 0
    kv.extend(_rows(2, 5))
    assert kv.size == 1 and kv.mask.tolist() == [[1, 1]]


def test_trim_drops_only_all_padding_columns():
    layers = [(torch.ones(2, H, 5, D), torch.ones(2, H, 5, D))]
    kv = KVBatch(layers, torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]), torch.tensor([2, 3]))
    kv.trim()
    assert kv.mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert kv.layers[0][0].shape == (2, H, 3, D)
    kv.trim()  # nothing more to drop
    assert kv.length == 3


def test_step_mask_and_advance():
    kv = _rows(2, 1)
    kv.extend(_rows(3, 2))
    assert kv.step_mask().tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    new = [(torch.zeros(2, H, 4, D), torch.zeros(2, H, 4, D)) for _ in range(LAYERS)]
    kv.advance(new)
    assert kv.layers is new
    assert kv.positions.tolist() == [3, 4]
    assert kv.mask.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]


# -- with the real engine --------------------------------------------------------------------------------

PROMPTS = (
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "1, 2, 3, 4,",
)
STEPS = 16


def _greedy_alone(engine, ids: list[int], steps: int) -> list[int]:
    logits, kv = engine.prefill(ids)
    out = [int(logits[-1].argmax())]
    for _ in range(steps):
        logits = engine.decode(kv, torch.tensor([out[-1]]), [None])
        out.append(int(logits[0].argmax()))
    return out


@pytest.fixture(scope="module")
def prompt_ids(tokenizer) -> list[list[int]]:
    ids = [tokenizer(p).input_ids for p in PROMPTS]
    assert len({len(i) for i in ids}) == 3  # three different lengths
    return ids


@pytest.fixture(scope="module")
def alone(engine, prompt_ids) -> list[list[int]]:
    return [_greedy_alone(engine, ids, STEPS) for ids in prompt_ids]


def _prefill_batch(engine, prompt_ids) -> tuple[KVBatch, list[list[int]]]:
    batch = empty_batch()
    outs = []
    for ids in prompt_ids:
        logits, kv = engine.prefill(ids)
        batch.extend(kv)
        outs.append([int(logits[-1].argmax())])
    return batch, outs


def test_batched_decode_matches_each_prompt_alone(engine, prompt_ids, alone):
    batch, outs = _prefill_batch(engine, prompt_ids)
    assert batch.mask.sum(dim=1).tolist() == [len(i) for i in prompt_ids]
    for _ in range(STEPS):
        logits = engine.decode(batch, torch.tensor([o[-1] for o in outs]), [None] * 3)
        assert logits.shape == (3, engine.info.vocab_size)
        for row, out in enumerate(outs):
            out.append(int(logits[row].argmax()))
    assert outs == alone
    assert batch.positions.tolist() == [len(i) + STEPS for i in prompt_ids]


def test_removing_a_row_mid_way_leaves_the_others_unchanged(engine, prompt_ids, alone):
    batch, outs = _prefill_batch(engine, prompt_ids)
    rows = [0, 1, 2]
    for step in range(STEPS):
        if step == STEPS // 2:  # the longest prompt leaves: the batch is re-indexed and trimmed
            rows = [0, 2]
            batch.select([0, 2])
            assert batch.size == 2
            assert batch.length == max(len(prompt_ids[r]) for r in rows) + step
        logits = engine.decode(batch, torch.tensor([outs[r][-1] for r in rows]), [None] * len(rows))
        for i, r in enumerate(rows):
            outs[r].append(int(logits[i].argmax()))
    assert outs[0] == alone[0]
    assert outs[2] == alone[2]
    assert outs[1] == alone[1][: STEPS // 2 + 1]
