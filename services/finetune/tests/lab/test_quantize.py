"""Quantization jobs: a LoRA adapter merged into its base and written as GGUF Q8_0 in one request, full weights
as GGUF Q4_1, and ONNX int8 / int4; each measured (perplexity against fp32, speed) and saved as the inference
service serves it. An artifact of a kind a quantization cannot read is refused at creation."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from genai_core.errors import InvalidArgument
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.types import Artifact, ArtifactKind, Hyperparameters, Serving
from genai_finetune.worker import Worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_dir(tiny_dir, tmp_path_factory) -> Path:
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("lora")
    model.save_pretrained(str(out))
    return out


def _artifact(artifact_id: str, kind: ArtifactKind, fmt: str, path: Path, base: str = "tiny") -> Artifact:
    return Artifact(id=artifact_id, kind=kind, job_id="ftjob-x", method="lora", base_model=base, base_model_revision="",
                    dataset_sha256="", path=str(path), format=fmt, size_bytes=0, model_id=f"ft:{base}::ftjob-x",
                    serving=Serving.ADAPTER, served=True, metrics={}, config={}, created_at=time.time())


@pytest.fixture
def lab_jobs(store, datasets, base_models, tokenizers, tokenizer_source, data_dir, lora_dir, tiny_dir) -> Jobs:
    known = {"ftart-lora": _artifact("ftart-lora", ArtifactKind.ADAPTER, "peft-lora", lora_dir),
             "ftart-full": _artifact("ftart-full", ArtifactKind.MODEL, "safetensors", tiny_dir),
             "ftart-reward": _artifact("ftart-reward", ArtifactKind.REWARD_MODEL, "safetensors-sequence-classification",
                                       tiny_dir)}
    return Jobs(store, datasets, base_models, tokenizers,
                Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30, artifacts=known.get))


def _quantize(lab_jobs, store, datasets, base_models, data_dir, text: str, config: dict):
    corpus = datasets.create(filename="eval.txt", purpose="fine-tune", content=text.encode())
    job = lab_jobs.create(JobRequest(base_model="tiny", training_dataset_id=corpus.id, method="quantize",
                                     method_config={"eval_tokens": 256, **config}, hyperparameters=Hyperparameters()))
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="w", threads=2,
                    lease_seconds=30, max_attempts=1, poll_seconds=0.1)
    assert worker.run_one()
    assert store.get_job(job.id).error is None, store.get_job(job.id).error
    outcome = next(o for j, o in store.trained() if j.id == job.id)
    return outcome, [e.message for e in store.events_after(job.id, 0)]


@pytest.mark.parametrize(("config", "files"), [
    ({"format": "gguf-q8_0", "source": "ftart-lora"}, ["model.gguf"]),
    ({"format": "gguf-q4_1", "source": "ftart-full"}, ["model.gguf"]),
    ({"format": "onnx-int8"}, ["model.onnx", "model.safetensors"]),
    ({"format": "onnx-int4"}, ["model.onnx", "model.safetensors"]),
])
async def test_quantizations_are_measured_and_saved(lab_jobs, store, datasets, base_models, data_dir, plays_text,
                                                    config, files):
    outcome, messages = await asyncio.to_thread(_quantize, lab_jobs, store, datasets, base_models, data_dir,
                                                plays_text[:20_000], config)
    m = outcome.metrics
    assert outcome.format == config["format"] and m["eval_tokens"] == 256
    assert m["perplexity_fp32"] > 1 and m["perplexity_quantized"] > 1 and m["tokens_per_second_quantized"] > 0
    # The random tiny model's perplexity is near its vocabulary size; quantization moves it by a few percent.
    assert abs(m["perplexity_increase"]) < (0.05 if "8" in config["format"] else 0.3), m
    path = Path(outcome.path)
    assert all((path / f).exists() for f in files)
    assert json.loads((path / "genai_quantization.json").read_text())["format"] == config["format"]
    assert any("perplexity" in t and config["format"] in t for t in messages)


def test_a_merged_adapter_changes_the_quantized_model(lab_jobs, store, datasets, base_models, data_dir, plays_text):
    merged, _ = _quantize(lab_jobs, store, datasets, base_models, data_dir, plays_text[:20_000],
                          {"format": "gguf-q8_0", "source": "ftart-lora"})
    base, _ = _quantize(lab_jobs, store, datasets, base_models, data_dir, plays_text[:20_000], {"format": "gguf-q8_0"})
    assert merged.metrics["perplexity_fp32"] != base.metrics["perplexity_fp32"]


def test_a_reward_model_cannot_be_quantized(lab_jobs, datasets, plays_text):
    corpus = datasets.create(filename="eval.txt", purpose="fine-tune", content=plays_text[:5000].encode())
    with pytest.raises(InvalidArgument) as info:
        lab_jobs.create(JobRequest(base_model="tiny", training_dataset_id=corpus.id, method="quantize",
                                   method_config={"format": "gguf-q8_0", "source": "ftart-reward"}))
    assert info.value.field_violations[0].field == "method_config.source" and "reward_model" in info.value.message
