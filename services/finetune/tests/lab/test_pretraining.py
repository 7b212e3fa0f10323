"""Pretraining from scratch, each transformer kind: a job is created through ``Jobs`` (tokenizer fetched through
the tokenizer port, blocks counted, memory estimated), a worker trains it for real with the Trainer, the loss
goes down, held-out perplexity is reported, and the saved model loads as the class that serves it. Bad input
(too little text, a tokenizer that lacks what the kind needs, a model too large for the memory limit, a base
model for a from-scratch method) fails when the job is created, with nothing queued."""

from __future__ import annotations

import asyncio

import pytest
import torch
from genai_core.errors import InvalidArgument
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.types import SCRATCH, Hyperparameters, JobState
from genai_finetune.worker import Worker

pytestmark = pytest.mark.slow

SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "seq_length": 64}


@pytest.fixture
def lab_jobs(store, datasets, base_models, tokenizers, tokenizer_source, data_dir) -> Jobs:
    planner = Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30)
    return Jobs(store, datasets, base_models, tokenizers, planner)


@pytest.fixture
def corpus_file(datasets, plays_text):
    return datasets.create(filename="plays.txt", purpose="fine-tune", content=plays_text[:150_000].encode())


def _train(store, datasets, base_models, data_dir, job_id: str):
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=1, poll_seconds=0.1)
    assert worker.run_one()
    return store.get_job(job_id)


@pytest.mark.parametrize(
    ("method", "tokenizer", "extra"),
    [("pretrain_decoder", "bpe", {"num_kv_heads": 2}), ("pretrain_encoder", "wordpiece", {}),
     ("pretrain_encoder_decoder", "unigram", {})],
)
async def test_each_kind_pretrains_and_saves_a_loadable_model(lab_jobs, store, datasets, base_models, data_dir,
                                                              corpus_file, method, tokenizer, extra):
    job = await asyncio.to_thread(lab_jobs.create, JobRequest(
        base_model="", training_dataset_id=corpus_file.id, method=method, seed=1,
        method_config={"tokenizer": tokenizer, **SMALL, **extra},
        hyperparameters=Hyperparameters(batch_size=8, max_steps=40, learning_rate_multiplier=1.0, eval_steps=20)))
    assert job.base_model == SCRATCH and job.state is JobState.QUEUED
    assert job.method_config["tokenizer_path"]  # the job's copy of the tokenizer
    planned = [e.message for e in store.events_after(job.id, 0)]
    assert any("parameters with tokenizer" in m and "Memory estimate" in m for m in planned), planned
    done = await asyncio.to_thread(_train, store, datasets, base_models, data_dir, job.id)
    assert done.state is JobState.RUNNING and done.error is None  # trained; the monitor registers it next
    events = [e for e in store.events_after(job.id, 0) if e.metrics is not None]
    losses = [e.metrics.train_loss for e in events if "training loss" in e.message]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses
    assert any("eval_perplexity" in e.metrics.extra for e in events)
    outcome = store.trained()[0][1]
    assert outcome.metrics["eval_perplexity"] < 1000 and outcome.metrics["kind"]
    _serve_check(method, outcome.path)


def _serve_check(method: str, path: str) -> None:
    """The output loads as the class each service serves it with, and does what that service asks of it."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("To be, or not to be", return_tensors="pt")
    if method == "pretrain_decoder":
        model = AutoModelForCausalLM.from_pretrained(path)
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
        assert out.shape[1] == ids.input_ids.shape[1] + 8
    elif method == "pretrain_encoder":
        model = AutoModel.from_pretrained(path)  # the BertModel inside the masked LM, as the embedding service loads it
        with torch.no_grad():
            states = model(**ids).last_hidden_state
        assert states.shape[-1] == 64 and torch.isfinite(states).all()
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
        out = model.generate(**ids, max_new_tokens=6, do_sample=False)
        assert out.shape[1] >= 2


def _create_error(lab_jobs, store, **fields) -> InvalidArgument:
    request = JobRequest(**{"base_model": "", "method": "pretrain_decoder", **fields})
    with pytest.raises(InvalidArgument) as info:
        lab_jobs.create(request)
    assert store.list_jobs("", 10, None).items == []  # nothing queued
    return info.value


def test_too_little_text_is_refused(lab_jobs, store, datasets):
    tiny = datasets.create(filename="tiny.txt", purpose="fine-tune", content=b"To be, or not to be.\n\nThat is all.")
    error = _create_error(lab_jobs, store, training_dataset_id=tiny.id, method_config={"tokenizer": "bpe", **SMALL})
    assert error.field_violations[0].field == "training_file" and "blocks of 64 tokens" in error.message


def test_encoder_needs_a_tokenizer_with_a_mask_token(lab_jobs, store, corpus_file):
    error = _create_error(lab_jobs, store, training_dataset_id=corpus_file.id, method="pretrain_encoder",
                          method_config={"tokenizer": "bpe", **SMALL})
    assert error.field_violations[0].field == "method_config.tokenizer" and "mask" in error.message


def test_a_model_too_large_for_memory_is_refused_before_training(lab_jobs, store, corpus_file):
    error = _create_error(lab_jobs, store, training_dataset_id=corpus_file.id, method_config={
        "tokenizer": "bpe", "hidden_size": 4096, "num_layers": 48, "num_heads": 32, "num_kv_heads": 8,
        "seq_length": 2048})
    assert error.reason == "MEMORY_ESTIMATE" and "GiB" in error.message and "limit of 8.00 GiB" in error.message
    assert "method_config.num_layers" in {v.field for v in error.field_violations}


def test_a_scratch_method_takes_no_base_model(lab_jobs, store, corpus_file):
    error = _create_error(lab_jobs, store, training_dataset_id=corpus_file.id, base_model="tiny",
                          method_config={"tokenizer": "bpe", **SMALL})
    assert error.field_violations[0].field == "base_model"


def test_unknown_tokenizer_is_not_found(lab_jobs, corpus_file):
    from genai_core.errors import NotFound

    with pytest.raises(NotFound):
        lab_jobs.create(JobRequest(base_model="", training_dataset_id=corpus_file.id, method="pretrain_decoder",
                                   method_config={"tokenizer": "nope", **SMALL}))
