"""Continued pretraining (perplexity on the new and the original domain before and after) and logit distillation
(a student that comes to agree with its teacher), each as a job on the tiny base model, trained for real."""

from __future__ import annotations

import asyncio

import pytest
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.types import Hyperparameters, JobState
from genai_finetune.worker import Worker

pytestmark = pytest.mark.slow


@pytest.fixture
def lab_jobs(store, datasets, base_models, tokenizers, tokenizer_source, data_dir) -> Jobs:
    return Jobs(store, datasets, base_models, tokenizers,
                Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30))


def _run(store, datasets, base_models, data_dir, job):
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=1, poll_seconds=0.1)
    assert worker.run_one()
    done = store.get_job(job.id)
    assert done.state is JobState.RUNNING and done.error is None, done.error
    return store.trained()[0][1], [e.message for e in store.events_after(job.id, 0)]


async def test_continued_pretraining_learns_the_new_domain_and_measures_forgetting(
        lab_jobs, store, datasets, base_models, data_dir, plays_text):
    corpus = datasets.create(filename="plays.txt", purpose="fine-tune", content=plays_text[:60_000].encode())
    job = await asyncio.to_thread(lab_jobs.create, JobRequest(
        base_model="tiny", training_dataset_id=corpus.id, method="continual_pretraining", seed=2,
        method_config={"seq_length": 64, "original_tokens": 512},
        hyperparameters=Hyperparameters(batch_size=8, max_steps=30, learning_rate_multiplier=40.0)))
    outcome, messages = await asyncio.to_thread(_run, store, datasets, base_models, data_dir, job)
    m = outcome.metrics
    assert m["perplexity_new_after"] < 0.5 * m["perplexity_new_before"], m
    assert m["perplexity_original_before"] > 1 and m["perplexity_original_after"] > 1
    assert any(t.startswith("Perplexity before training") for t in messages)
    assert any(t.startswith("Perplexity after training") for t in messages)


async def test_distillation_student_agrees_with_its_teacher(lab_jobs, store, datasets, base_models, data_dir,
                                                            plays_text):
    corpus = datasets.create(filename="plays.txt", purpose="fine-tune", content=plays_text[:60_000].encode())
    job = await asyncio.to_thread(lab_jobs.create, JobRequest(
        base_model="tiny", training_dataset_id=corpus.id, method="distillation", seed=2,
        method_config={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "seq_length": 64,
                       "alpha": 1.0, "temperature": 1.0},
        hyperparameters=Hyperparameters(batch_size=4, max_steps=30, learning_rate_multiplier=5.0)))
    assert any("student" in t for t in [e.message for e in store.events_after(job.id, 0)])
    outcome, _ = await asyncio.to_thread(_run, store, datasets, base_models, data_dir, job)
    m = outcome.metrics
    assert m["parameters_student"] < m["parameters_teacher"]
    assert m["agreement"] > 0.5, m  # an untrained student agrees at about 1 / vocabulary size
    assert m["perplexity_teacher"] > 1 and m["perplexity_student"] > 1
