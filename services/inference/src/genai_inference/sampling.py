"""Per-sequence logits processing and sampling, on numpy float32 rows (no torch: the quantized and
llama.cpp engines run without it, and a numpy call on one 49k row costs microseconds, not a trip
through torch's dispatcher and thread pool).

Order, as in vLLM/HF: logit bias and EOS suppression → repetition penalty (HF multiplicative) →
presence/frequency penalties (OpenAI additive) → constraint mask → temperature → top-k → top-p →
min-p → sample with the sequence's own seeded generator. Reported logprobs are the model's raw
distribution (log-softmax before any processing), the vLLM default.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np

from genai_inference.types import Sampling

NEG_INF = np.float32(-np.inf)
_TOP_P_CANDIDATES = 512  # top-p looks at this many most likely tokens first; a full sort only if they fall short


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities along the last axis (max-shifted, so large logits do not overflow)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


class Sampler:
    """The sampling state of one sequence: seeded generator and token counts."""

    def __init__(self, sampling: Sampling, prompt_ids: Iterable[int], vocab_size: int, eos_ids: frozenset[int]):
        self.params = sampling
        self.vocab_size = vocab_size
        self.eos_ids = np.array(sorted(i for i in eos_ids if 0 <= i < vocab_size), dtype=np.int64)
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(63)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.counts = np.zeros(vocab_size, dtype=np.float32)  # generated-token counts
        self.seen = np.zeros(vocab_size, dtype=bool)  # prompt + generated, for repetition
        ids = np.fromiter((i for i in prompt_ids if 0 <= i < vocab_size), dtype=np.int64)
        self.seen[ids] = True
        self.bias = None
        if sampling.logit_bias:
            self.bias = np.zeros(vocab_size, dtype=np.float32)
            for token, value in sampling.logit_bias.items():
                if 0 <= token < vocab_size:
                    self.bias[token] = value
        self.generated = 0

    @property
    def is_plain_greedy(self) -> bool:
        p = self.params
        return (
            p.greedy
            and self.bias is None
            and p.repetition_penalty == 1.0
            and p.presence_penalty == 0.0
            and p.frequency_penalty == 0.0
            and not (p.min_new_tokens and self.generated < p.min_new_tokens)
            and not p.ignore_eos
        )

    def process(self, logits: np.ndarray) -> np.ndarray:
        """Apply bias and penalties in place to a 1-D row of float32 logits; return it."""
        p = self.params
        if self.bias is not None:
            logits += self.bias
        if (p.ignore_eos or self.generated < p.min_new_tokens) and self.eos_ids.size:
            logits[self.eos_ids] = NEG_INF
        if p.repetition_penalty != 1.0:
            seen = logits[self.seen]
            logits[self.seen] = np.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
        if p.frequency_penalty or p.presence_penalty:
            logits -= self.counts * np.float32(p.frequency_penalty) + (self.counts > 0) * np.float32(p.presence_penalty)
        return logits

    def choose(self, logits: np.ndarray) -> int:
        """Pick the next token from processed logits (greedy when temperature is 0)."""
        p = self.params
        if p.greedy:
            return int(np.argmax(logits))
        scores = logits.astype(np.float64) / p.temperature
        if p.top_k and p.top_k < scores.size:
            kth = np.partition(scores, -p.top_k)[-p.top_k]
            scores[scores < kth] = -np.inf
        probs = _softmax(scores)
        if p.top_p < 1.0:
            probs = _top_p(probs, p.top_p)
        if p.min_p > 0.0:
            probs[probs < p.min_p * probs.max()] = 0.0
        cumulative = np.cumsum(probs)
        return int(min(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"), probs.size - 1))

    def accept(self, token_id: int) -> None:
        if 0 <= token_id < self.vocab_size:
            self.counts[token_id] += 1
            self.seen[token_id] = True
        self.generated += 1


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Zero every token outside the smallest most-likely set whose mass reaches top_p (the token that
    crosses it is kept). Only the best candidates are sorted unless they hold less than top_p."""
    size = probs.size
    if size > _TOP_P_CANDIDATES:
        candidates = np.argpartition(probs, size - _TOP_P_CANDIDATES)[size - _TOP_P_CANDIDATES:]
        if probs[candidates].sum() < top_p:
            candidates = np.arange(size)
    else:
        candidates = np.arange(size)
    order = candidates[np.argsort(-probs[candidates], kind="stable")]
    cumulative = np.cumsum(probs[order])
    keep = order[: max(1, int(np.searchsorted(cumulative - probs[order], top_p, side="right")))]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out


def top_logprobs(raw_logits: np.ndarray, token_id: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's logprob and the k most likely alternatives, from raw logits."""
    logprobs = log_softmax(raw_logits.astype(np.float32, copy=False))
    chosen = float(logprobs[token_id])
    return chosen, top_k(logprobs, k)


def top_k(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k largest entries of a 1-D row as (index, value), best first."""
    if k <= 0:
        return []
    k = min(k, logprobs.size)
    best = np.argpartition(logprobs, logprobs.size - k)[logprobs.size - k:]
    best = best[np.argsort(-logprobs[best], kind="stable")]
    return [(int(i), float(logprobs[i])) for i in best]
