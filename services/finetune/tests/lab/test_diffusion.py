"""The diffusion job: scikit-learn's digits as an image dataset, a class-conditioned UNet trained by the Trainer
on the DDPM objective (loss goes down), DDIM samples judged by a pixel classifier, the artifact saved as the
inference service loads it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from genai_core.errors import InvalidArgument
from genai_finetune.corpora import digits_jsonl
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.types import Hyperparameters, JobState
from genai_finetune.worker import Worker

pytestmark = pytest.mark.slow


@pytest.fixture
def lab_jobs(store, datasets, base_models, tokenizers, tokenizer_source, data_dir) -> Jobs:
    return Jobs(store, datasets, base_models, tokenizers,
                Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30))


async def test_digits_diffusion_trains_samples_and_saves(lab_jobs, store, datasets, base_models, data_dir):
    lines = digits_jsonl().splitlines()[:400]
    images = datasets.create(filename="digits.jsonl", purpose="fine-tune", content=b"\n".join(lines))
    assert images.format.value == "image" and images.record_count == 400
    job = await asyncio.to_thread(lab_jobs.create, JobRequest(
        base_model="", training_dataset_id=images.id, method="diffusion", seed=5,
        method_config={"image_size": 8, "base_channels": 16, "sample_steps": 10, "quality_samples": 40},
        hyperparameters=Hyperparameters(batch_size=32, max_steps=60)))
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=1, poll_seconds=0.1)
    assert await asyncio.to_thread(worker.run_one)
    assert store.get_job(job.id).error is None
    outcome = store.trained()[0][1]
    events = [e for e in store.events_after(job.id, 0) if e.metrics is not None and "training loss" in e.message]
    losses = [e.metrics.train_loss for e in events]
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10, losses
    m = outcome.metrics
    assert m["classes"] == 10 and m["samples_per_second"] > 0 and 0 <= m["classifier_accuracy_samples"] <= 1
    assert m["classifier_accuracy_real"] > 0.8  # the judge itself knows the digits
    manifest = json.loads((Path(outcome.path) / "genai_image_model.json").read_text())
    assert manifest["labels"] == [str(d) for d in range(10)] and manifest["channels"] == 1
    assert (Path(outcome.path) / "unet" / "config.json").exists() and (Path(outcome.path) / "samples.png").exists()
    assert store.get_job(job.id).state is JobState.RUNNING  # trained; registering is the monitor's


def test_too_few_images_are_refused(lab_jobs, datasets):
    images = datasets.create(filename="digits.jsonl", purpose="fine-tune",
                             content=b"\n".join(digits_jsonl().splitlines()[:5]))
    with pytest.raises(InvalidArgument) as info:
        lab_jobs.create(JobRequest(base_model="", training_dataset_id=images.id, method="diffusion"))
    assert "too few" in info.value.message


def test_images_must_be_png(datasets):
    with pytest.raises(InvalidArgument) as info:
        datasets.create(filename="bad.jsonl", purpose="fine-tune", content=b'{"image": "aGVsbG8=", "label": "1"}')
    assert info.value.field_violations[0].field == "line[1].image"
