"""Per-sequence logits processing and sampling.

Order, as in vLLM/HF: logit bias and EOS suppression → repetition penalty (HF multiplicative) →
presence/frequency penalties (OpenAI additive) → constraint mask → temperature → top-k → top-p →
min-p → sample with the sequence's own seeded generator. Reported logprobs are the model's raw
distribution (log-softmax before any processing), the vLLM default.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch

from genai_inference.types import Sampling

NEG_INF = float("-inf")


class Sampler:
    """The sampling state of one sequence: seeded generator and token counts."""

    def __init__(self, sampling: Sampling, prompt_ids: Iterable[int], vocab_size: int, eos_ids: frozenset[int]):
        self.params = sampling
        self.vocab_size = vocab_size
        self.eos_ids = torch.tensor(sorted(i for i in eos_ids if i < vocab_size), dtype=torch.long)
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(63)
        self.generator = torch.Generator().manual_seed(seed)
        self.counts = torch.zeros(vocab_size, dtype=torch.float32)  # generated-token counts
        self.seen = torch.zeros(vocab_size, dtype=torch.bool)  # prompt + generated, for repetition
        ids = torch.tensor([i for i in prompt_ids if i < vocab_size], dtype=torch.long)
        if ids.numel():
            self.seen[ids] = True
        self.bias = None
        if sampling.logit_bias:
            self.bias = torch.zeros(vocab_size)
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

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply bias and penalties in place to a 1-D row of float32 logits; return it."""
        p = self.params
        if self.bias is not None:
            logits += self.bias
        if (p.ignore_eos or self.generated < p.min_new_tokens) and self.eos_ids.numel():
            logits[self.eos_ids] = NEG_INF
        if p.repetition_penalty != 1.0 and bool(self.seen.any()):
            seen = logits[self.seen]
            logits[self.seen] = torch.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
        if p.frequency_penalty or p.presence_penalty:
            logits -= self.counts * p.frequency_penalty + (self.counts > 0).float() * p.presence_penalty
        return logits

    def choose(self, logits: torch.Tensor) -> int:
        """Pick the next token from processed logits (greedy when temperature is 0)."""
        p = self.params
        if p.greedy:
            return int(torch.argmax(logits))
        scores = logits / p.temperature
        if p.top_k and p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, NEG_INF)
        if p.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
            drop = cumulative - torch.softmax(sorted_scores, dim=-1) > p.top_p  # keep the token that crosses p
            scores = scores.scatter(0, order[drop], NEG_INF)
        probs = torch.softmax(scores, dim=-1)
        if p.min_p > 0.0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def accept(self, token_id: int) -> None:
        if token_id < self.vocab_size:
            self.counts[token_id] += 1
            self.seen[token_id] = True
        self.generated += 1


def top_logprobs(raw_logits: torch.Tensor, token_id: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's logprob and the k most likely alternatives, from raw logits."""
    logprobs = torch.log_softmax(raw_logits, dim=-1)
    chosen = float(logprobs[token_id])
    if k <= 0:
        return chosen, []
    values, indices = torch.topk(logprobs, k)
    return chosen, [(int(i), float(v)) for i, v in zip(indices, values, strict=True)]
