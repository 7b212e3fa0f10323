"""Prefix caching and bounded prompt scoring.

* ``PrefixCache`` itself: chained block keys, lookups that stop at the first miss, LRU eviction by bytes;
* through the scheduler (onnxruntime-gguf with float32 activations, so cached and uncached runs compare to
  1e-3): shared prefixes are reused (usage reports them), outputs and prompt logprobs stay the same, and
  the N answer choices of one question reuse the question's KV;
* issue 14 item 4: scoring a long prompt (echo + logprobs) never holds [L, V] logits: the peak memory it
  adds stays far below what those logits alone would take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
from genai_inference.generation import Inference
from genai_inference.prefix_cache import Block, PrefixCache
from genai_inference.scheduler import Scheduler
from genai_inference.types import Sampling

# -- the cache alone ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakePiece:
    tokens: tuple[int, ...]
    nbytes: int = 100


def _fill(cache: PrefixCache, ids: list[int], adapter: str | None = None) -> None:
    for i, key in enumerate(cache.keys(ids, adapter)):
        cache.insert(key, Block(FakePiece(tuple(ids[i * cache.block : (i + 1) * cache.block]))))


def test_keys_chain_over_everything_before_and_the_adapter():
    cache = PrefixCache(10_000, block=4)
    a = cache.keys(list(range(10)), None)
    assert len(a) == 2  # two whole blocks; the last two tokens are not a block
    assert cache.keys(list(range(8)), None) == a
    assert cache.keys([99, *range(1, 10)], None)[1] != a[1]  # block 2's key depends on block 1
    assert cache.keys(list(range(10)), "lora")[0] != a[0]  # an adapter changes the KV


def test_lookup_returns_the_leading_blocks_in_order_and_stops_at_a_miss():
    cache = PrefixCache(10_000, block=4)
    _fill(cache, list(range(12)))
    match = cache.lookup([*range(8), 50, 51, 52, 53], None)
    assert [b.piece.tokens for b in match.blocks] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert cache.lookup([*range(4), 9, 9, 9, 9, *range(8, 12)], None).tokens == 4
    assert cache.lookup(list(range(12)), "other").tokens == 0


def test_scored_lookups_need_logprobs_with_enough_alternatives():
    cache = PrefixCache(10_000, block=2)
    keys = cache.keys([1, 2, 3, 4], None)
    cache.insert(keys[0], Block(FakePiece((1, 2)), logprobs=("a", "b"), top=5))  # type: ignore[arg-type]
    cache.insert(keys[1], Block(FakePiece((3, 4))))
    assert cache.lookup([1, 2, 3, 4], None).tokens == 4
    assert cache.lookup([1, 2, 3, 4], None, top=5).tokens == 2  # block 2 was never scored
    assert cache.lookup([1, 2, 3, 4], None, top=6).tokens == 0


def test_blocks_before_the_scored_positions_need_only_their_kv():
    cache = PrefixCache(10_000, block=2)
    _fill(cache, [1, 2, 3, 4, 5, 6])  # KV only, never scored
    assert cache.lookup([1, 2, 3, 4, 5, 6], None, top=0).tokens == 0
    assert cache.lookup([1, 2, 3, 4, 5, 6], None, top=0, scored_from=4).tokens == 4  # blocks [1,2] and [3,4]
    assert cache.lookup([1, 2, 3, 4, 5, 6], None, top=0, scored_from=3).tokens == 2  # [3,4] holds position 3


def test_least_recently_used_blocks_go_first_when_full():
    cache = PrefixCache(350, block=1)  # room for three 100-byte blocks
    _fill(cache, [1, 2, 3])
    assert cache.lookup([1], None).tokens == 1  # touch block 1
    _fill(cache, [7])  # a new chain: evicts the least recently used block (that of [1, 2])
    assert cache.bytes <= 350 and len(cache) == 3
    assert cache.lookup([1, 2, 3], None).tokens == 1


# -- through the scheduler ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def cached(exact, gguf_source, settings):
    from genai_inference.models import load_tokenizer

    tokenizer = load_tokenizer(gguf_source.directory)
    scheduler = Scheduler(exact, tokenizer, max_batch_size=8, max_queue=16, prefix_cache=PrefixCache(64 << 20))
    await scheduler.start()
    yield Inference(scheduler, tokenizer, settings)
    await scheduler.close()


def _request(inference: Inference, text: str = "", ids=(), **sampling):
    sampling.setdefault("temperature", 0.0)
    return inference.request("", "", text=text, ids=ids, sampling=Sampling(**sampling), constraint=None,
                             add_special_tokens=False)


SYSTEM = ("You are a careful assistant for a hardware store. Answer in one short sentence, name the aisle "
          "when you know it, and never invent prices. ")


async def test_a_shared_prefix_is_reused_and_the_answer_is_unchanged(cached, chat_text):
    cache = cached.backend.prefix_cache
    cache.clear()
    hammers, nails = chat_text(SYSTEM + "Where are the hammers?"), chat_text(SYSTEM + "Where are the nails?")
    first = await cached.collect(_request(cached, hammers, max_new_tokens=8))
    assert first.done.usage.cached_prompt_tokens == 0
    hits = cache.hits
    second = await cached.collect(_request(cached, nails, max_new_tokens=8))
    assert cache.hits == hits + 1
    a, b = cached.tokenizer(hammers).input_ids, cached.tokenizer(nails).input_ids
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert second.done.usage.cached_prompt_tokens == (shared // 16) * 16
    cache.clear()
    cold = await cached.collect(_request(cached, nails, max_new_tokens=8))
    assert cold.done.usage.cached_prompt_tokens == 0
    assert len(cold.completions[0].token_ids) > 3
    assert second.completions[0].token_ids == cold.completions[0].token_ids


async def test_prompt_logprobs_come_back_the_same_from_the_cache(cached):
    cache = cached.backend.prefix_cache
    cache.clear()
    ids = cached.tokenizer(SYSTEM * 3).input_ids
    cold = await cached.collect(_request(cached, ids=ids, max_new_tokens=0, prompt_logprobs=3))
    warm = await cached.collect(_request(cached, ids=ids, max_new_tokens=0, prompt_logprobs=2))
    assert warm.done.usage.cached_prompt_tokens == (len(ids) // 16) * 16 - 1
    a, b = cold.done.prompt_logprobs, warm.done.prompt_logprobs
    assert len(a) == len(b) == len(ids)
    assert [t.token_id for t in a] == ids and [t.token_id for t in b] == ids
    np.testing.assert_allclose([t.logprob for t in a], [t.logprob for t in b], atol=1e-3)
    assert [len(t.top) for t in b[1:]] == [2] * (len(ids) - 1)  # the alternatives asked for, not those cached
    assert [t.top[0].token_id for t in a[1:]] == [t.top[0].token_id for t in b[1:]]
    more = await cached.collect(_request(cached, ids=ids, max_new_tokens=0, prompt_logprobs=5))
    assert more.done.usage.cached_prompt_tokens == 0  # cached with 3 alternatives: not enough for 5


async def test_the_choices_of_one_question_reuse_its_context(cached):
    """What the evaluation service sends: a question's context, then each answer choice, as one prompt each."""
    import asyncio

    cache = cached.backend.prefix_cache
    cache.clear()
    context = cached.tokenizer("Question: which of these metals is liquid at room temperature? " * 4
                               + "Answer:").input_ids
    choices = [cached.tokenizer(c).input_ids for c in (" mercury", " iron", " copper", " gold")]
    first = await cached.collect(_request(cached, ids=context + choices[0], max_new_tokens=0, prompt_logprobs=0))
    rest = await asyncio.gather(*(cached.collect(_request(cached, ids=context + c, max_new_tokens=0,
                                                          prompt_logprobs=0)) for c in choices[1:]))
    reused = [r.done.usage.cached_prompt_tokens for r in rest]
    assert all(r >= (len(context) // 16) * 16 - 1 for r in reused), reused
    scores = [sum(t.logprob for t in r.done.prompt_logprobs[len(context):]) for r in [first, *rest]]
    assert all(s < 0 for s in scores)
    uncached = Scheduler(cached.backend.engine, cached.tokenizer, max_batch_size=8, max_queue=16)
    await uncached.start()
    try:
        plain = Inference(uncached, cached.tokenizer, cached.settings)
        expected = await plain.collect(_request(plain, ids=context + choices[2], max_new_tokens=0, prompt_logprobs=0))
    finally:
        await uncached.close()
    np.testing.assert_allclose([t.logprob for t in rest[1].done.prompt_logprobs],
                               [t.logprob for t in expected.done.prompt_logprobs], atol=1e-3)


async def test_scoring_from_the_continuation_skips_the_context_and_matches_full_scoring(cached):
    """prompt_logprobs_start at the continuation (what the evaluation service sends): the same logprobs as
    scoring the whole prompt, only the continuation's positions returned, and the context's KV cached for
    the other choices without logprobs (so a later full scoring still scores the context itself)."""
    cache = cached.backend.prefix_cache
    cache.clear()
    context = cached.tokenizer("Passage: the river floods every spring and the town moves uphill. " * 3
                               + "Question: when does the river flood? Answer:").input_ids
    choices = [cached.tokenizer(c).input_ids for c in (" every spring", " never", " in a dry autumn")]
    start = len(context)
    tails = []
    for choice in choices:
        result = await cached.collect(_request(cached, ids=context + choice, max_new_tokens=0, prompt_logprobs=0,
                                               prompt_logprobs_start=start))
        assert [t.token_id for t in result.done.prompt_logprobs] == choice
        tails.append(result)
    assert tails[0].done.usage.cached_prompt_tokens == 0
    assert all(r.done.usage.cached_prompt_tokens == (start // 16) * 16 for r in tails[1:])
    full = await cached.collect(_request(cached, ids=context + choices[2], max_new_tokens=0, prompt_logprobs=0))
    assert len(full.done.prompt_logprobs) == start + len(choices[2])
    assert full.done.usage.cached_prompt_tokens == 0  # the context's blocks were cached without logprobs
    np.testing.assert_allclose([t.logprob for t in tails[2].done.prompt_logprobs],
                               [t.logprob for t in full.done.prompt_logprobs[start:]], atol=1e-3)
    again = await cached.collect(_request(cached, ids=context + choices[1], max_new_tokens=0, prompt_logprobs=0,
                                          prompt_logprobs_start=start))  # now the scored blocks are cached too
    np.testing.assert_allclose([t.logprob for t in again.done.prompt_logprobs],
                               [t.logprob for t in tails[1].done.prompt_logprobs], atol=1e-3)
    whole = await cached.collect(_request(cached, ids=context, max_new_tokens=0, prompt_logprobs=0,
                                          prompt_logprobs_start=len(context) + 5))
    assert whole.done.prompt_logprobs == ()  # nothing at or after the start: nothing scored


async def test_continuation_scores_equal_full_scores_on_the_int8_engine(fast, gguf_source, settings):
    """On onnxruntime-gguf with int8 activations a one-row forward rounds differently from a chunk, so scoring
    from the continuation must not prefill a lone context token (a context of 16k + 2 tokens, 16k cached):
    the logprobs equal full scoring's exactly, which is what the lm-eval cross-check relies on."""
    import asyncio

    from genai_inference.models import load_tokenizer

    tokenizer = load_tokenizer(gguf_source.directory)
    scheduler = Scheduler(fast, tokenizer, max_batch_size=8, max_queue=16, prefix_cache=PrefixCache(32 << 20))
    await scheduler.start()
    inference = Inference(scheduler, tokenizer, settings)
    try:
        context = tokenizer("Question: which enzyme kinetics hold at high substrate concentration with a competitive "
                            "inhibitor present? " * 8).input_ids[:82]
        assert len(context) == 82
        choices = [tokenizer(c).input_ids for c in (" The rate approaches Vmax.", " Km decreases.", " It stops.")]
        tails = await asyncio.gather(*(inference.collect(_request(inference, ids=context + c, max_new_tokens=0,
                                                                  prompt_logprobs=0, prompt_logprobs_start=82))
                                       for c in choices))
        assert [r.done.usage.cached_prompt_tokens for r in tails[1:]] == [80, 80]
        for choice, tail in zip(choices, tails, strict=True):
            scheduler.prefix_cache.clear()
            full = await inference.collect(_request(inference, ids=context + choice, max_new_tokens=0,
                                                    prompt_logprobs=0))
            assert [t.logprob for t in tail.done.prompt_logprobs] == [t.logprob for t in full.done.prompt_logprobs[82:]]
    finally:
        await scheduler.close()


def test_a_scoring_start_needs_prompt_logprobs(settings):
    from genai_core.errors import InvalidArgument
    from genai_inference.generation import check_sampling

    check_sampling(Sampling(max_new_tokens=0, prompt_logprobs=0, prompt_logprobs_start=5), settings, 2048)
    for bad in (Sampling(max_new_tokens=3, prompt_logprobs_start=5),
                Sampling(max_new_tokens=3, prompt_logprobs=0, prompt_logprobs_start=5, echo=True),
                Sampling(max_new_tokens=0, prompt_logprobs=0, prompt_logprobs_start=4096)):
        with pytest.raises(InvalidArgument, match="prompt_logprobs_start"):
            check_sampling(bad, settings, 2048)


# -- bounded scoring (issue 14 item 4) -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets VmHWM to the current RSS
        handle.write("5")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime-gguf", "torch"])
async def test_scoring_a_long_prompt_does_not_hold_its_logits(backend, inference, fast, gguf_source, settings):
    """echo + logprobs 20 + max_tokens 0 over a long prompt (the lm-eval loglikelihood shape): the peak RSS it
    adds is the prompt's KV cache plus a bounded working set, not [L, V] float32 logits (L x 196 KB)."""
    from genai_inference.models import load_tokenizer

    length = 2000  # the torch engine (the default before issue 13) prefills slowly; the bound scales
    if backend != "torch":
        tokenizer = load_tokenizer(gguf_source.directory)
        scheduler = Scheduler(fast, tokenizer, max_batch_size=8, max_queue=16, prefix_cache=PrefixCache(32 << 20))
        await scheduler.start()
        inference, length = Inference(scheduler, tokenizer, settings), 4000
    rng = np.random.default_rng(0)
    ids = [1, *rng.integers(100, 40000, size=length - 1).tolist()]
    try:
        _reset_peak()
        before = _peak_rss_mb()
        result = await inference.collect(_request(inference, ids=ids, max_new_tokens=0, prompt_logprobs=20))
        grown = _peak_rss_mb() - before
    finally:
        if backend != "torch":
            await inference.backend.close()
    assert len(result.done.prompt_logprobs) == length
    assert all(len(t.top) == 20 for t in result.done.prompt_logprobs[1:])
    logits_mb = length * 49152 * 4 / 2**20
    kv_mb = length * 30 * 2 * 3 * 64 * 4 / 2**20
    # transformers' DynamicCache concatenates the whole past into a new tensor for every chunk, so the torch
    # engine briefly holds its KV twice (and the freed copies fragment the heap): a bound of 3 x KV there.
    copies = 1 if backend != "torch" else 3
    assert grown < copies * kv_mb + 160, (
        f"peak grew {grown:.0f} MB; its KV is {kv_mb:.0f} MB, [L, V] logits alone would be {logits_mb:.0f} MB")
