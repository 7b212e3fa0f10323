"""Comparing runs on the same task: per-example paired differences, a paired bootstrap confidence interval
of the mean difference, and a paired significance test (exact McNemar for 0/1 scores such as accuracy,
a sign-flip permutation test otherwise). Only examples both runs scored are paired.

    >>> from genai_evaluation.types import Sample
    >>> a = [Sample("t", i, {}, scores={"acc": 0.0}) for i in range(8)]
    >>> b = [Sample("t", i, {}, scores={"acc": 1.0}) for i in range(8)]
    >>> c = compare(a, b, "run-b", "t", ["acc"], resamples=200)[0]
    >>> c.difference, c.wins, c.test, round(c.p_value, 4)
    (1.0, 8, 'mcnemar-exact', 0.0078)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from genai_evaluation import statistics
from genai_evaluation.types import Comparison, Sample


def compare(baseline: Sequence[Sample], other: Sequence[Sample], run_id: str, task_id: str, names: Sequence[str],
            *, confidence: float = 0.95, resamples: int = 2000, include_differences: bool = False,
            seed: int = 0) -> list[Comparison]:
    base = {s.index: s for s in baseline}
    mine = {s.index: s for s in other}
    shared = sorted(set(base) & set(mine))
    out = []
    for name in names:
        pairs = [(i, base[i].scores[name], mine[i].scores[name]) for i in shared
                 if name in base[i].scores and name in mine[i].scores
                 and not (math.isnan(base[i].scores[name]) or math.isnan(mine[i].scores[name]))]
        if not pairs:
            continue
        a = [p[1] for p in pairs]
        b = [p[2] for p in pairs]
        difference, low, high = statistics.paired_bootstrap(a, b, resamples=resamples, seed=seed, confidence=confidence)
        wins = sum(y > x for x, y in zip(a, b, strict=True))
        losses = sum(y < x for x, y in zip(a, b, strict=True))
        binary = all(v in (0.0, 1.0) for v in (*a, *b))
        if binary:
            p_value, test = statistics.mcnemar_exact(wins, losses), "mcnemar-exact"
        else:
            p_value, test = statistics.permutation_test(a, b, seed=seed), "permutation"
        metric, _, filter_name = name.partition(",")
        out.append(Comparison(
            run_id=run_id, task_id=task_id, metric=metric, filter=filter_name, paired_count=len(pairs),
            baseline_value=sum(a) / len(a), value=sum(b) / len(b), difference=difference, ci_lower=low, ci_upper=high,
            p_value=p_value, test=test, wins=wins, losses=losses, ties=len(pairs) - wins - losses,
            differences=tuple(pairs) if include_differences else ()))
    return out
