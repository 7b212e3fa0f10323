"""Sampler: greedy, seeded sampling, top-k/top-p/min-p, penalties, logit bias, EOS masking, logprobs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from genai_inference.sampling import Sampler, top_logprobs
from genai_inference.types import Sampling

VOCAB = 8
EOS = 7
# Probabilities after softmax at temperature 1: ~[.43, .26, .16, .06, .04, .03, .01, .01]
LOGITS = np.array([3.0, 2.5, 2.0, 1.0, 0.6, 0.3, -1.0, -1.2], dtype=np.float32)


def sampler(prompt=(), **params) -> Sampler:
    return Sampler(Sampling(**params), prompt, VOCAB, frozenset({EOS}))


def draw(s: Sampler, logits: np.ndarray = LOGITS, times: int = 300) -> list[int]:
    return [s.choose(s.process(logits.copy())) for _ in range(times)]


def test_greedy_is_argmax():
    s = sampler(temperature=0.0)
    assert s.params.greedy and s.is_plain_greedy
    assert s.choose(LOGITS.copy()) == 0
    shuffled = np.array([0.1, -2.0, 0.5, 4.0, 3.9, 0.0, 1.0, 2.0], dtype=np.float32)
    assert s.choose(shuffled) == 3


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    flat = np.zeros(VOCAB, dtype=np.float32)  # uniform: any two different streams of 40 draws differ
    a = draw(sampler(temperature=1.0, seed=1234), flat, 40)
    b = draw(sampler(temperature=1.0, seed=1234), flat, 40)
    c = draw(sampler(temperature=1.0, seed=1235), flat, 40)
    assert a == b
    assert a != c
    assert len(set(a)) > 3  # it really samples


def test_unseeded_samplers_differ():
    flat = np.zeros(VOCAB, dtype=np.float32)
    assert draw(sampler(temperature=1.0), flat, 40) != draw(sampler(temperature=1.0), flat, 40)


def test_top_k_one_is_greedy():
    for seed in range(20):
        assert draw(sampler(temperature=1.5, top_k=1, seed=seed), times=5) == [0] * 5


def test_top_k_keeps_only_the_k_best():
    seen = set(draw(sampler(temperature=2.0, top_k=3, seed=0), times=400))
    assert seen == {0, 1, 2}


def test_tiny_top_p_is_greedy():
    for seed in range(20):
        assert draw(sampler(temperature=1.5, top_p=1e-6, seed=seed), times=5) == [0] * 5


def test_top_p_keeps_the_token_that_crosses_p():
    # p(0) ~ .43 < .5, so token 1 (cumulative ~.69) is kept too; token 2 is not.
    seen = set(draw(sampler(temperature=1.0, top_p=0.5, seed=0), times=400))
    assert seen == {0, 1}


def test_min_p_drops_unlikely_tokens():
    # min_p=0.5: keep tokens with p >= 0.5 * p(0) ~ .21: tokens 0 and 1 only.
    seen = set(draw(sampler(temperature=1.0, min_p=0.5, seed=0), times=400))
    assert seen == {0, 1}
    without = set(draw(sampler(temperature=1.0, seed=0), times=400))
    assert len(without) > 3


def test_temperature_sharpens():
    hot = draw(sampler(temperature=5.0, seed=3), times=400)
    cold = draw(sampler(temperature=0.2, seed=3), times=400)
    assert cold.count(0) > hot.count(0)
    assert cold.count(0) > 350


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = np.array([2.0, -1.0, 3.0, 0.5, -2.0, 1.0, 0.0, 0.0], dtype=np.float32)
    s = sampler(prompt=[0, 1], repetition_penalty=2.0, temperature=0.0)
    assert not s.is_plain_greedy
    out = s.process(logits.copy())
    assert out[0] == pytest.approx(1.0)  # 2.0 / 2
    assert out[1] == pytest.approx(-2.0)  # -1.0 * 2
    assert np.array_equal(out[2:], logits[2:])  # unseen tokens untouched
    s.accept(2)  # generated tokens count as seen too
    out = s.process(logits.copy())
    assert out[2] == pytest.approx(1.5)
    assert s.choose(out) == 2  # 1.5 still beats 1.0 and 1.0


def test_presence_and_frequency_penalties_are_additive_on_generated_tokens_only():
    logits = np.zeros(VOCAB, dtype=np.float32)
    s = sampler(prompt=[5], presence_penalty=0.5, frequency_penalty=0.25, temperature=0.0)
    s.accept(3)
    s.accept(3)
    s.accept(4)
    out = s.process(logits.copy())
    assert out[3] == pytest.approx(-(2 * 0.25 + 0.5))
    assert out[4] == pytest.approx(-(1 * 0.25 + 0.5))
    assert out[5] == 0.0  # in the prompt, not generated: no OpenAI-style penalty
    assert out[0] == 0.0
    negative = sampler(presence_penalty=-1.0, temperature=0.0)  # a negative penalty encourages repetition
    negative.accept(6)
    assert negative.choose(negative.process(np.zeros(VOCAB, dtype=np.float32))) == 6


def test_logit_bias_forces_and_forbids_tokens():
    forced = sampler(temperature=0.0, logit_bias={5: 100.0})
    assert not forced.is_plain_greedy
    assert forced.choose(forced.process(LOGITS.copy())) == 5
    banned = sampler(temperature=0.0, logit_bias={0: -100.0, 1: -100.0})
    assert banned.choose(banned.process(LOGITS.copy())) == 2
    sampled = sampler(temperature=1.0, seed=0, logit_bias={6: 100.0})
    assert set(draw(sampled, times=50)) == {6}


def test_logit_bias_out_of_vocabulary_is_ignored():
    s = sampler(temperature=0.0, logit_bias={VOCAB + 10: 100.0, -1: 100.0})
    assert np.array_equal(s.process(LOGITS.copy()), LOGITS)


def test_min_new_tokens_masks_eos_until_reached():
    eos_first = LOGITS.copy()
    eos_first[EOS] = 10.0
    s = sampler(temperature=0.0, min_new_tokens=2)
    assert not s.is_plain_greedy
    assert s.process(eos_first.copy())[EOS] == -math.inf
    assert s.choose(s.process(eos_first.copy())) == 0
    s.accept(0)
    assert s.choose(s.process(eos_first.copy())) == 0
    s.accept(0)
    assert s.is_plain_greedy  # reached: back to the plain path
    assert s.choose(s.process(eos_first.copy())) == EOS


def test_ignore_eos_masks_eos_always():
    eos_first = LOGITS.copy()
    eos_first[EOS] = 10.0
    s = sampler(temperature=0.0, ignore_eos=True)
    for _ in range(5):
        token = s.choose(s.process(eos_first.copy()))
        assert token != EOS
        s.accept(token)
    sampled = sampler(temperature=1.0, seed=0, ignore_eos=True)
    assert EOS not in draw(sampled, eos_first, 200)


def test_accept_counts():
    s = sampler(temperature=0.0)
    s.accept(1)
    s.accept(1)
    s.accept(VOCAB + 3)  # out-of-vocabulary ids are counted as generated but not as tokens
    assert s.generated == 3
    assert s.counts[1] == 2 and bool(s.seen[1])


def test_top_logprobs_are_raw_log_softmax_sorted():
    chosen, top = top_logprobs(LOGITS, 2, 3)
    shifted = LOGITS.astype(np.float64) - LOGITS.max()
    expected = shifted - np.log(np.exp(shifted).sum())
    assert chosen == pytest.approx(float(expected[2]))
    assert chosen <= 0
    assert [t for t, _ in top] == [0, 1, 2]
    values = [v for _, v in top]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(float(expected[0]))
    assert math.fsum(math.exp(v) for v in expected.tolist()) == pytest.approx(1.0)
    assert top_logprobs(LOGITS, 2, 0) == (pytest.approx(float(expected[2])), [])


def test_top_p_over_a_large_vocabulary_matches_a_full_sort():
    """The candidate shortcut (the 512 best tokens) keeps exactly the set a full sort keeps."""
    rng = np.random.default_rng(0)
    vocab = 49152
    for scale, top_p in ((8.0, 0.9), (0.01, 0.5), (3.0, 0.999)):  # peaked, nearly flat (fallback), long tail
        logits = (rng.standard_normal(vocab) * scale).astype(np.float32)
        probs = np.exp(logits.astype(np.float64) - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        expected = set(order[: max(1, int(np.searchsorted(cumulative - probs[order], top_p, side="right")))].tolist())
        s = Sampler(Sampling(temperature=1.0, top_p=top_p, seed=1), (), vocab, frozenset())
        drawn = {s.choose(logits.copy()) for _ in range(200)}
        assert drawn <= expected
        if len(expected) < 5:
            assert drawn == expected
