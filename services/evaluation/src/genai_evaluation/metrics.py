"""The metric registry: what each metric means, which output types report it, and how per-sample values
combine into a task's value (with a standard error and a bootstrap confidence interval).

Per-sample values live in ``Sample.scores`` under the metric's output name (``"acc"``, ``"pass@1"``,
``"exact_match,strict-match"`` when a task has several filters). Corpus-level metrics (perplexities)
read ``Sample.extra`` (log-likelihood and token/word/byte counts) instead of averaging.

    >>> METRICS["acc"].aggregation
    'mean'
    >>> output_names("pass_at_k", {"k": [1, 10]})
    ('pass@1', 'pass@10')
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from genai_core.errors import InvalidArgument

from genai_evaluation import statistics
from genai_evaluation.types import MetricValue, OutputType, Sample

OT = OutputType


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    output_types: tuple[OutputType, ...]
    higher_is_better: bool = True
    aggregation: str = "mean"  # "mean" or a corpus-level key of CORPUS


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("acc", "Accuracy: the choice with the highest log-likelihood is the gold one (loglikelihood: the "
           "target is the greedy continuation).", (OT.MULTIPLE_CHOICE, OT.LOGLIKELIHOOD)),
    Metric("acc_norm", "Accuracy with each choice's log-likelihood divided by its length in characters (as lm-eval).",
           (OT.MULTIPLE_CHOICE,)),
    Metric("perplexity", "exp(-mean log-likelihood of the targets).", (OT.LOGLIKELIHOOD,), False, "perplexity"),
    Metric("token_perplexity", "exp(-log-likelihood / tokens) over the whole corpus.", (OT.LOGLIKELIHOOD_ROLLING,),
           False, "token_perplexity"),
    Metric("word_perplexity", "exp(-log-likelihood / words) over the whole corpus.", (OT.LOGLIKELIHOOD_ROLLING,),
           False, "word_perplexity"),
    Metric("byte_perplexity", "exp(-log-likelihood / bytes) over the whole corpus.", (OT.LOGLIKELIHOOD_ROLLING,),
           False, "byte_perplexity"),
    Metric("bits_per_byte", "-log-likelihood / (bytes * ln 2) over the whole corpus.", (OT.LOGLIKELIHOOD_ROLLING,),
           False, "bits_per_byte"),
    Metric("exact_match", "The filtered answer equals the target (options: ignore_case, ignore_punctuation, "
           "regexes_to_ignore).", (OT.GENERATE_UNTIL, OT.RAG)),
    Metric("pass_at_k", "Unbiased pass@k of generated code run against the task's tests in the sandbox "
           "(option k: a list).", (OT.GENERATE_UNTIL,)),
    Metric("ndcg_at_k", "nDCG@k of the ranked results against the relevance judgements (option k).", (OT.RETRIEVAL,)),
    Metric("recall_at_k", "Recall@k of the ranked results (option k).", (OT.RETRIEVAL,)),
    Metric("precision_at_k", "Precision@k of the ranked results (option k).", (OT.RETRIEVAL,)),
    Metric("mrr", "Mean reciprocal rank of the first relevant result.", (OT.RETRIEVAL,)),
    Metric("faithfulness", "LLM judge: the answer is supported by the retrieved contexts (P(yes) of the judge).",
           (OT.RAG,)),
    Metric("answer_relevance", "LLM judge: the answer addresses the question (P(yes) of the judge).", (OT.RAG,)),
    Metric("context_precision", "LLM judge: average precision of the retrieved contexts judged relevant, by rank.",
           (OT.RAG,)),
    Metric("context_recall", "LLM judge: the reference answer is supported by the retrieved contexts.", (OT.RAG,)),
    Metric("faithfulness_overlap", "Non-LLM: share of the answer's content words found in the contexts.", (OT.RAG,)),
    Metric("context_recall_overlap", "Non-LLM: share of the reference answer's content words found in the "
           "contexts.", (OT.RAG,)),
    Metric("answer_similarity", "Non-LLM: cosine of the answer's and the reference's embeddings.", (OT.RAG,)),
    Metric("answer_f1", "Non-LLM: token F1 of the answer against the reference (SQuAD style).", (OT.RAG,)),
)}

# The metrics a task reports when its metric_list is empty.
DEFAULTS: dict[OutputType, tuple[str, ...]] = {
    OT.MULTIPLE_CHOICE: ("acc", "acc_norm"),
    OT.LOGLIKELIHOOD: ("acc", "perplexity"),
    OT.LOGLIKELIHOOD_ROLLING: ("token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"),
    OT.GENERATE_UNTIL: ("exact_match",),
    OT.RETRIEVAL: ("ndcg_at_k", "recall_at_k", "mrr"),
    OT.RAG: ("faithfulness", "answer_relevance", "context_precision", "context_recall", "faithfulness_overlap",
            "context_recall_overlap", "answer_similarity", "answer_f1"),
}

_K_METRICS = {"pass_at_k": "pass@{}", "ndcg_at_k": "ndcg@{}", "recall_at_k": "recall@{}",
              "precision_at_k": "precision@{}"}
_K_DEFAULTS = {"pass_at_k": [1], "ndcg_at_k": [10], "recall_at_k": [10], "precision_at_k": [10]}


def ks(name: str, options: Mapping[str, Any]) -> list[int]:
    raw = options.get("k", _K_DEFAULTS.get(name, []))
    return [raw] if isinstance(raw, int) else list(raw)


def output_names(name: str, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The names a metric reports under (``pass_at_k`` with ``k: [1, 10]`` reports ``pass@1`` and ``pass@10``)."""
    if name in _K_METRICS:
        return tuple(_K_METRICS[name].format(k) for k in ks(name, options))
    return (name,)


def describe(output_name: str) -> Metric:
    """The registry entry behind an output name (``pass@1`` -> ``pass_at_k``)."""
    base = output_name.split(",", 1)[0]
    for name, pattern in _K_METRICS.items():
        if re.fullmatch(pattern.format(r"\d+"), base):
            return METRICS[name]
    return METRICS[base]


def check(name: str, options: Mapping[str, Any], output_type: OutputType, where: str) -> None:
    metric = METRICS.get(name)
    if metric is None:
        raise InvalidArgument.for_field(f"{where}.metric", f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    if output_type not in metric.output_types:
        raise InvalidArgument.for_field(
            f"{where}.metric", f"{name} does not apply to {output_type.value} tasks; it applies to "
            f"{', '.join(t.value for t in metric.output_types)}")
    if name in _K_METRICS:
        values = ks(name, options)
        if not values or not all(isinstance(k, int) and 1 <= k <= 1000 for k in values):
            raise InvalidArgument.for_field(f"{where}.k", "must be a positive integer or a list of them")
    if name == "exact_match" and not isinstance(options.get("regexes_to_ignore", []), list):
        raise InvalidArgument.for_field(f"{where}.regexes_to_ignore", "must be a list of regexes")


# -- per-sample scoring helpers --------------------------------------------------------------------------

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def exact_match(prediction: str, reference: str, options: Mapping[str, Any]) -> float:
    """lm-eval's exact_match: optional regexes removed from both, then case and punctuation folding."""
    for pattern in options.get("regexes_to_ignore", []):
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if options.get("ignore_case"):
        prediction, reference = prediction.lower(), reference.lower()
    if options.get("ignore_punctuation"):
        prediction, reference = prediction.translate(_PUNCTUATION), reference.translate(_PUNCTUATION)
    return float(prediction.strip() == reference.strip())


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if n - correct < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - correct + 1, n + 1)))


def score_name(metric: str, filter_name: str) -> str:
    return f"{metric},{filter_name}" if filter_name else metric


# -- aggregation -----------------------------------------------------------------------------------------


def _perplexity(samples: Sequence[Sample], unit: str) -> float:
    ll = sum(s.extra.get("loglikelihood", 0.0) for s in samples)
    count = sum(s.extra.get(unit, 0.0) for s in samples)
    return math.exp(-ll / count) if count else math.nan


CORPUS: dict[str, Callable[[Sequence[Sample]], float]] = {
    "perplexity": lambda ss: math.exp(-float(np.mean([s.extra.get("loglikelihood", 0.0) for s in ss]))),
    "token_perplexity": lambda ss: _perplexity(ss, "tokens"),
    "word_perplexity": lambda ss: _perplexity(ss, "words"),
    "byte_perplexity": lambda ss: _perplexity(ss, "bytes"),
    "bits_per_byte": lambda ss: (-sum(s.extra.get("loglikelihood", 0.0) for s in ss)
                                 / (sum(s.extra.get("bytes", 0.0) for s in ss) * math.log(2)))
    if sum(s.extra.get("bytes", 0.0) for s in ss) else math.nan,
}


def aggregate(task_id: str, name: str, samples: Sequence[Sample], *, resamples: int = 1000,
              seed: int = 0) -> MetricValue | None:
    """The task value of score ``name`` (``metric`` or ``metric,filter``) over ``samples``."""
    metric, _, filter_name = name.partition(",")
    entry = describe(metric)
    if entry.aggregation == "mean":
        values = [s.scores[name] for s in samples if name in s.scores and not math.isnan(s.scores[name])]
        if not values:
            return None
        summary = statistics.mean_with_ci(values, resamples=resamples, seed=seed)
    else:
        scored = [s for s in samples if s.extra]
        if not scored:
            return None
        summary = statistics.statistic_with_ci(scored, CORPUS[entry.aggregation], resamples=resamples, seed=seed)
    return MetricValue(task_id, metric, summary.value, summary.count, filter_name, summary.stderr,
                       summary.ci_lower, summary.ci_upper)


def aggregate_all(task_id: str, names: Sequence[str], samples: Sequence[Sample], *, resamples: int = 1000,
                  seed: int = 0) -> list[MetricValue]:
    out = []
    for name in names:
        value = aggregate(task_id, name, samples, resamples=resamples, seed=seed)
        if value is not None:
            out.append(value)
    return out
