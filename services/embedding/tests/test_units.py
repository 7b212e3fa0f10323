"""Unit tests without a model: pooling, sparse weights, truncation, the batcher, settings."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from genai_core.errors import InvalidArgument, ResourceExhausted
from genai_core.settings import SettingsError
from genai_embedding.batcher import Batcher
from genai_embedding.embedder import Truncation, truncate
from genai_embedding.pooling import l2_normalize, mean_pool
from genai_embedding.settings import EngineName, Settings
from genai_sparse.bm25 import HASH_SPACE, EnglishAnalyzer, WordPieceAnalyzer, bm25_weights, term_id

# -- pooling ---------------------------------------------------------------------------------


def test_mean_pool_ignores_padding():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    np.testing.assert_allclose(pooled[0], hidden[0].mean(axis=0))
    np.testing.assert_allclose(pooled[1], hidden[1, 0])


def test_l2_normalize_unit_rows_and_zero_row():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


# -- sparse ----------------------------------------------------------------------------------


def test_bm25_saturates():
    v = bm25_weights([5, 5, 5, 9], k1=1.2, b=0.75, avgdl=4)
    assert v.indices == [5, 9]
    norm = 1.2 * (1 - 0.75 + 0.75 * 4 / 4)
    assert v.values[0] == pytest.approx(3 * 2.2 / (3 + norm))
    assert v.values[1] == pytest.approx(1 * 2.2 / (1 + norm))
    assert v.values[0] < 3 * v.values[1]  # saturation: three occurrences weigh less than three times one
    assert all(w < 2.2 for w in v.values)  # bounded by k1 + 1


def test_bm25_longer_documents_weigh_each_term_less():
    short = bm25_weights([7, 8], k1=1.2, b=0.75, avgdl=10)
    long = bm25_weights([7, *range(100, 130)], k1=1.2, b=0.75, avgdl=10)
    assert long.values[0] < short.values[0]
    assert bm25_weights([7], k1=1.2, b=0.0, avgdl=10).values == [pytest.approx(1.0)]  # b=0: no length norm


def test_english_analyzer_stems_drops_stop_words_and_hashes_stably():
    english = EnglishAnalyzer()
    terms = english.terms("The runner was running; runners RUN to the Run-off.", [])
    assert terms.count(term_id("run")) == 3 and terms.count(term_id("runner")) == 2  # running/RUN/Run; runner(s)
    assert term_id("the") not in terms and term_id("was") not in terms and term_id("to") not in terms
    assert term_id("off") in terms and len(terms) == 6
    assert english.terms("a", []) == [] and english.terms("x y z", []) == []  # one-letter words are not terms
    assert term_id("run") == 1518968264  # blake2b: the same id in every process and release
    assert all(0 <= t < HASH_SPACE for t in terms)


def test_wordpiece_analyzer_drops_special_ids():
    assert WordPieceAnalyzer({101, 102}, 30522).terms("ignored", [101, 7, 7, 102]) == [7, 7]


# -- truncation ------------------------------------------------------------------------------


def test_truncate_end_and_start_keep_special_tokens():
    ids = [101, *range(1, 11), 102]
    end = truncate(ids, 6, Truncation.END, "texts[0]", special_ends=True)
    start = truncate(ids, 6, Truncation.START, "texts[0]", special_ends=True)
    assert end.ids == [101, 1, 2, 3, 4, 102] and end.truncated
    assert start.ids == [101, 7, 8, 9, 10, 102] and start.truncated
    assert truncate(ids, 12, Truncation.REJECT, "x", special_ends=True).ids == ids  # fits: untouched


def test_truncate_raw_token_inputs():
    assert truncate([1, 2, 3, 4], 2, Truncation.END, "f", special_ends=False).ids == [1, 2]
    assert truncate([1, 2, 3, 4], 2, Truncation.START, "f", special_ends=False).ids == [3, 4]


def test_truncate_reject_names_the_field():
    with pytest.raises(InvalidArgument) as info:
        truncate(list(range(10)), 5, Truncation.REJECT, "texts[3]", special_ends=True)
    assert info.value.field_violations[0].field == "texts[3]"
    assert "max_input_tokens 5" in info.value.message


# -- batcher ---------------------------------------------------------------------------------


class CountingEngine:
    """Vector = [sum of real ids, number of real tokens, padded width]; records each call's shape."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, int]] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.release.wait(5)
        time.sleep(self.delay)
        self.calls.append(ids.shape)
        width = np.full(len(ids), ids.shape[1], np.float32)
        return np.stack([(ids * mask).sum(1), mask.sum(1), width], axis=1).astype(np.float32)


async def test_batcher_merges_concurrent_requests_into_one_forward():
    engine = CountingEngine()
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=64, max_wait_ms=50)
    requests = [[[i, i]] for i in range(1, 9)] + [[[100], [200, 1, 1]]]
    results = await asyncio.gather(*(batcher.embed(r) for r in requests))
    assert len(engine.calls) == 1 and batcher.batches == 1
    for request, (vectors, queue_s) in zip(requests, results, strict=True):
        assert vectors.shape == (len(request), 3)
        assert vectors[:, 0].tolist() == [sum(s) for s in request]  # results split back in order
        assert queue_s >= 0
    await batcher.close()


async def test_batcher_sorts_by_length_and_chunks_large_batches():
    engine = CountingEngine()
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=4, max_wait_ms=1)
    sequences = [[1] * n for n in (9, 1, 8, 2, 7, 3, 6, 4, 5, 10)]
    vectors, _ = await batcher.embed(sequences)
    assert [int(v) for v in vectors[:, 1]] == [len(s) for s in sequences]  # input order restored
    assert engine.calls == [(4, 4), (4, 8), (2, 10)]  # sorted chunks pad only to their own longest
    await batcher.close()


async def test_batcher_caps_padded_tokens_per_forward():
    engine = CountingEngine()
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=64, max_batch_tokens=12)
    sequences = [[1] * n for n in (2, 2, 2, 2, 2, 2, 3, 3, 3, 5, 13)]
    vectors, _ = await batcher.embed(sequences)
    assert [int(v) for v in vectors[:, 1]] == [len(s) for s in sequences]
    # six rows of 2 fill 12 tokens; three rows of 3 = 9 (a fourth row of 5 would make 20); an over-long
    # text still runs, alone.
    assert engine.calls == [(6, 2), (3, 3), (1, 5), (1, 13)]
    snapshot = {m.name: m for m in batcher.metrics.padding.collect()}
    assert snapshot["genai_embedding_padding_tokens"].samples[0].value == 0  # ascending widths: no padding here
    assert sum(s.value for s in batcher.metrics.tokens.collect()[0].samples if s.name.endswith("_total")) == 39
    await batcher.close()


async def test_idle_batcher_runs_a_lone_request_at_once_and_batches_what_queues_behind_a_forward():
    engine = CountingEngine()
    engine.release.clear()
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=64)  # max_wait_ms=0: no fixed wait
    first = asyncio.ensure_future(batcher.embed([[1]]))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if batcher.forward_calls:
            break
    assert batcher.forward_calls == 1  # the lone request went straight to the model, without companions
    behind = [asyncio.ensure_future(batcher.embed([[i, i]])) for i in range(2, 12)]  # the model is busy
    await asyncio.sleep(0.01)
    engine.release.set()
    await asyncio.gather(first, *behind)
    assert engine.calls == [(1, 1), (10, 2)]  # everything queued behind the busy model shared one forward
    await batcher.close()


async def test_batcher_does_not_wait_when_the_batch_is_full():
    engine = CountingEngine()
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=2, max_wait_ms=5_000)
    started = time.perf_counter()
    await batcher.embed([[1], [2]])
    assert time.perf_counter() - started < 1.0
    await batcher.close()


async def test_batcher_queue_full_is_resource_exhausted():
    engine = CountingEngine()
    engine.release.clear()  # the first forward blocks until released
    batcher = Batcher(engine.forward, dimension=3, max_batch_size=1, max_wait_ms=0, max_queue=2)
    first = asyncio.ensure_future(batcher.embed([[1]]))
    await asyncio.sleep(0.05)  # the collector took it: the model is busy
    queued = [asyncio.ensure_future(batcher.embed([[i]])) for i in (2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted):
        await batcher.embed([[4]])
    engine.release.set()
    await asyncio.gather(first, *queued)
    await batcher.close()


async def test_batcher_forward_failure_reaches_every_caller():
    def broken(ids, mask):
        raise RuntimeError("boom")

    batcher = Batcher(broken, dimension=3, max_wait_ms=20)
    results = await asyncio.gather(batcher.embed([[1]]), batcher.embed([[2]]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await batcher.embed([]))[0].shape == (0, 3)
    await batcher.close()


# -- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_env():
    s = Settings.from_env({})
    assert (s.server.port, s.server.metrics_port) == (50053, 9103)
    assert s.embedding.engine is EngineName.ONNXRUNTIME and s.embedding.max_input_tokens == 256
    assert (s.embedding.max_batch_size, s.embedding.max_batch_tokens, s.embedding.max_wait_ms) == (64, 1024, 0.0)
    s = Settings.from_env({"GENAI_EMBEDDING_ENGINE": "torch", "GENAI_EMBEDDING_MAX_WAIT_MS": "2"})
    assert s.embedding.engine is EngineName.TORCH and s.embedding.max_wait_ms == 2.0


@pytest.mark.parametrize(
    "environ",
    [
        {"GENAI_EMBEDDING_PRECISION": "fp16"},
        {"GENAI_EMBEDDING_ENGINE": "torch", "GENAI_EMBEDDING_PRECISION": "int8"},
        {"GENAI_EMBEDDING_MAX_BATCH_SIZE": "0"},
        {"GENAI_EMBEDDING_SPARSE_B": "2"},
    ],
)
def test_bad_settings_fail_fast(environ):
    with pytest.raises(SettingsError):
        Settings.from_env(environ)
