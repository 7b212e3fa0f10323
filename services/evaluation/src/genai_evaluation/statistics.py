"""Uncertainty of scores and of differences between runs: standard errors, bootstrap confidence intervals,
paired tests. Numpy only, seeded, so the same samples always give the same numbers.

    >>> s = mean_with_ci([1, 0, 1, 1], resamples=200, seed=0)
    >>> s.value, s.count
    (0.75, 4)
    >>> mcnemar_exact(wins=0, losses=6)
    0.03125
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    value: float
    count: int
    stderr: float | None
    ci_lower: float | None
    ci_upper: float | None


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1.0 - alpha))


def mean_with_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                 confidence: float = CONFIDENCE) -> Summary:
    """The mean, its standard error (sample std / sqrt(n), as lm-eval reports) and a percentile bootstrap CI."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    mean = float(data.mean())
    if n < 2:
        return Summary(mean, n, None, None, None)
    stderr = float(data.std(ddof=1) / math.sqrt(n))
    if resamples <= 0:
        return Summary(mean, n, stderr, None, None)
    rng = np.random.default_rng(seed)
    draws = data[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = _interval(draws, confidence)
    return Summary(mean, n, stderr, low, high)


def statistic_with_ci(items: Sequence[T], statistic: Callable[[Sequence[T]], float], *, resamples: int = 1000,
                      seed: int = 0, confidence: float = CONFIDENCE) -> Summary:
    """A corpus-level statistic (perplexity) with a bootstrap CI over items and its bootstrap standard error."""
    value = float(statistic(items))
    n = len(items)
    if n < 2 or resamples <= 0:
        return Summary(value, n, None, None, None)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic([items[i] for i in rng.integers(0, n, size=n)]) for _ in range(min(resamples, 500))])
    low, high = _interval(draws, confidence)
    return Summary(value, n, float(draws.std(ddof=1)), low, high)


def paired_bootstrap(baseline: Sequence[float], other: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                     confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The mean difference (other - baseline) and its percentile bootstrap CI, resampling examples in pairs."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    diff = b - a
    n = len(diff)
    if n == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = _interval(draws, confidence)
    return float(diff.mean()), low, high


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs (a binomial test with p = 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def permutation_test(baseline: Sequence[float], other: Sequence[float], *, resamples: int = 5000,
                     seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test of a zero mean difference."""
    diff = np.asarray(other, dtype=float) - np.asarray(baseline, dtype=float)
    if len(diff) == 0 or not np.any(diff):
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(resamples, len(diff)))
    extreme = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (resamples + 1))
