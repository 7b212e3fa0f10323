"""A cross-encoder reranker with sentence-transformers: ``CrossEncoder`` from the MiniLM encoder (a one-label
head on top), trained by ``CrossEncoderTrainer`` on the user's (query, relevant document) pairs and negatives
mined by the MiniLM bi-encoder among the dataset's documents (``mine_hard_negatives``), plus any negatives the
records bring. A line without a query (``{"document": ...}``) adds one of the user's collection to the documents
negatives are mined from: the candidates a search of that collection will hand the reranker. On SciFact (the
bench's split) mining among the whole corpus instead of the relevant documents alone took the trained reranker,
fused with hybrid search, from nDCG@10 0.762 to 0.775 (hybrid alone 0.754).

Two losses (``RerankerConfig.loss``, the registry ``LOSSES``):

* ``ranking`` (default): each query's relevant document against its negatives and other queries' documents
  in the batch, one softmax (``MultipleNegativesRankingLoss``). Measured on SciFact (60 held-out queries, the
  bi-encoder's top 20 reordered): after one epoch it reaches nDCG@10 0.477 where the binary loss reaches 0.349,
  still at its prior (a head on a bi-encoder's [CLS] learns slowly; a listwise loss gives it a signal per query).
* ``binary``: each (query, document) pair labelled 1 or 0 (``BinaryCrossEntropyLoss``, positives weighted by
  the negatives per query), as the sentence-transformers examples train on MS MARCO-sized data.

A share of the queries is held out: for each, the bi-encoder's top ``CANDIDATES`` documents of the whole
dataset are ranked once by the bi-encoder and once by the trained cross-encoder, and nDCG@10 of both is
reported, which is the gain the reranker brings to a retriever's results. The result is saved as a
transformers sequence classifier that the embedding service's Rerank runs.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import RERANKER_LOSSES, RerankerConfig
from genai_finetune.methods import method
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, training_arguments
from genai_finetune.recipes.distributed import is_main, report_on_main
from genai_finetune.types import Level, Outcome

CANDIDATES = 20  # documents of the bi-encoder's ranking the reranker reorders, per held-out query


def split_queries(records: list[dict], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training queries, held-out queries), each query once, in a seeded order (corpus lines have none)."""
    queries = sorted({r["query"] for r in records if r["query"]})
    random.Random(seed).shuffle(queries)
    held = max(1, round(len(queries) * fraction)) if fraction > 0 and len(queries) > 2 else 0
    return queries[held:], queries[:held]


def collection(records: list[dict]) -> list[str]:
    """The documents negatives are mined among: relevant ones, given negatives and corpus lines, each once."""
    return sorted({r["document"] for r in records} | {n for r in records for n in r["negatives"]})


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    gain = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return gain / ideal if ideal else 0.0


def evaluate(bi_encoder, cross_encoder, queries: list[str], relevant: dict[str, set[str]],
             corpus: list[str]) -> dict[str, float]:
    """nDCG@10 over ``queries`` of the bi-encoder's ranking of the corpus, and of its top candidates reordered by
    ``cross_encoder`` (None: the bi-encoder alone)."""
    if not queries:
        return {}
    documents = bi_encoder.encode(corpus, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    asked = bi_encoder.encode(queries, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    before, after = [], []
    for query, vector in zip(queries, asked, strict=True):
        top = np.argsort(-(documents @ vector))[:CANDIDATES]
        candidates = [corpus[i] for i in top]
        before.append(ndcg_at_10(candidates, relevant[query]))
        if cross_encoder is not None:
            scores = cross_encoder.predict([(query, c) for c in candidates], batch_size=32, show_progress_bar=False)
            after.append(ndcg_at_10([candidates[i] for i in np.argsort(-np.asarray(scores))], relevant[query]))
    out = {"ndcg@10_bi_encoder": float(np.mean(before)), "held_out_queries": len(queries)}
    if after:
        out["ndcg@10_reranked"] = float(np.mean(after))
    return out


def _mine(positives: list[dict], bi_encoder, corpus: list[str], config: RerankerConfig, output_format: str) -> Dataset:
    from sentence_transformers.util import mine_hard_negatives

    pairs = Dataset.from_dict({"query": [r["query"] for r in positives], "document": [r["document"] for r in positives]})
    return mine_hard_negatives(pairs, bi_encoder, corpus=corpus, num_negatives=config.negatives_per_query,
                               range_min=1, output_format=output_format, batch_size=64, verbose=False)


def labeled_pairs(positives: list[dict], bi_encoder, corpus: list[str], config: RerankerConfig) -> Dataset:
    """(query, document, label) rows: each relevant pair (1), its mined hard negatives and given negatives (0)."""
    mined = _mine(positives, bi_encoder, corpus, config, "labeled-pair")
    rows = {"query": list(mined["query"]), "document": list(mined["document"]),
            "label": [float(x) for x in mined["label"]]}
    for r in positives:
        for negative in r["negatives"]:
            rows["query"].append(r["query"])
            rows["document"].append(negative)
            rows["label"].append(0.0)
    return Dataset.from_dict(rows)


def ranked_tuples(positives: list[dict], bi_encoder, corpus: list[str], config: RerankerConfig) -> Dataset:
    """(query, document, negative_1..n) rows: each relevant pair with its given negatives first, then mined ones."""
    mined = _mine(positives, bi_encoder, corpus, config, "n-tuple")
    width = config.negatives_per_query
    given = {(r["query"], r["document"]): list(r["negatives"]) for r in positives}
    columns = [f"negative_{i + 1}" for i in range(width)]
    rows: dict[str, list[str]] = {"query": [], "document": [], **{c: [] for c in columns}}
    for row in mined:
        own = given.get((row["query"], row["document"]), [])
        negatives = list(dict.fromkeys([*own, *(row[c] for c in columns)]))[:width]
        rows["query"].append(row["query"])
        rows["document"].append(row["document"])
        for column, negative in zip(columns, negatives, strict=True):
            rows[column].append(negative)
    return Dataset.from_dict(rows)


@dataclass(frozen=True)
class Loss:
    rows: Callable[[list[dict], object, list[str], RerankerConfig], Dataset]
    build: Callable[[object, RerankerConfig], object]
    labelled: Callable[[int], int]  # labelled pairs per training row, for n negatives per query
    scored: Callable[[int], int]  # pairs the model scores per training row and step (in-batch negatives too)


def _ranking_loss(model, config: RerankerConfig):  # noqa: ANN202 - a sentence-transformers loss
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, num_negatives=config.negatives_per_query)


def _binary_loss(model, config: RerankerConfig):  # noqa: ANN202
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    return BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(config.negatives_per_query)))


LOSSES = {
    "ranking": Loss(ranked_tuples, _ranking_loss, labelled=lambda n: 1 + n, scored=lambda n: 1 + 2 * n),
    "binary": Loss(labeled_pairs, _binary_loss, labelled=lambda n: 1, scored=lambda n: 1),
}
assert tuple(LOSSES) == RERANKER_LOSSES


def train(context: RecipeContext) -> Outcome | None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    prepare(context)
    config, spec = context.config, context.spec
    assert isinstance(config, RerankerConfig)
    chosen = method(spec.method)
    records = context.train_records
    corpus = collection(records)
    relevant: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r["query"]:
            relevant[r["query"]].add(r["document"])
    train_queries, held_queries = split_queries(records, config.eval_fraction, spec.seed)
    reporter = report_on_main(context.reporter)
    bi_encoder = SentenceTransformer(spec.base_model_dir, device="cpu")
    loss = LOSSES[config.loss]
    training = set(train_queries)
    rows = loss.rows([r for r in records if r["query"] in training], bi_encoder, corpus, config).shuffle(seed=spec.seed)
    pairs = len(rows) * loss.labelled(config.negatives_per_query)
    reporter.message(Level.INFO, f"{pairs} labelled pairs (a relevant document and {config.negatives_per_query} mined "
                                 f"or given negatives per relevant pair, {config.loss} loss) from {len(train_queries)} "
                                 f"queries; {len(held_queries)} held out")
    model = CrossEncoder(spec.base_model_dir, num_labels=1, max_length=config.max_length, device="cpu")
    h = context.hyperparameters
    pairs_per_step = (h.batch_size or 1) * loss.scored(config.negatives_per_query)
    callback = JobCallback(reporter, tokens_per_step=pairs_per_step * config.max_length / 2)
    trainer = quiet(CrossEncoderTrainer(
        model=model, args=training_arguments(context, evaluate=False, config_class=CrossEncoderTrainingArguments),
        train_dataset=rows, loss=loss.build(model, config), callbacks=[callback]))
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if callback.stopped is not None:
        return None
    metrics = {**final_metrics(callback, trainer), **evaluate(bi_encoder, model, held_queries, relevant, corpus),
               "training_pairs": pairs}
    if "ndcg@10_reranked" in metrics:
        reporter.message(Level.INFO, f"Held-out nDCG@10: bi-encoder {metrics['ndcg@10_bi_encoder']:.3f}, reranked "
                                     f"{metrics['ndcg@10_reranked']:.3f}")
    output = context.output_dir
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(output))
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(output), metrics, metrics["trained_tokens"])
