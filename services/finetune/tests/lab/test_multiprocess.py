"""The multi-process path on CPU: the same pretraining job, launched by torchrun on 2 processes (DDP over gloo)
through the Ray runner's entrypoint (``python -m genai_finetune run-spec``), trains once across both: every step is
reported once (by the main rank), the batch is split between the processes, and the main rank alone saves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from genai_finetune.jobs import JobRequest, Jobs
from genai_finetune.planning import Planner
from genai_finetune.ray_runner import OUTCOME, PREFIX, SPEC
from genai_finetune.types import Hyperparameters
from genai_finetune.worker import build_spec

from tests.support.processes import free_port

pytestmark = pytest.mark.slow


def test_pretraining_runs_on_two_processes_with_gloo(store, datasets, base_models, tokenizers, tokenizer_source,
                                                     data_dir, plays_text):
    jobs = Jobs(store, datasets, base_models, tokenizers,
                Planner(datasets, tokenizer_source, data_dir=data_dir, memory_limit=8 * 2**30))
    corpus = datasets.create(filename="plays.txt", purpose="fine-tune", content=plays_text[:80_000].encode())
    job = jobs.create(JobRequest(
        base_model="", training_dataset_id=corpus.id, method="pretrain_decoder", seed=3,
        method_config={"tokenizer": "bpe", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                       "seq_length": 64},
        hyperparameters=Hyperparameters(batch_size=8, max_steps=20, eval_steps=10)))
    spec = build_spec(job, datasets, base_models, data_dir / "jobs", threads=1)
    work = Path(spec.work_dir)
    work.mkdir(parents=True)
    (work / SPEC).write_text(spec.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=2", f"--master_port={free_port()}",
         "-m", "genai_finetune", "run-spec", str(work / SPEC)],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line[len(PREFIX):]) for line in run.stdout.splitlines() if line.startswith(PREFIX)]
    steps = [e["metrics"]["step"] for e in events if e["kind"] == "metrics" and "training loss" in e["text"]]
    assert steps == list(range(1, 21))  # each step reported once, by the main rank
    losses = [e["metrics"]["train_loss"] for e in events if e["kind"] == "metrics" and "training loss" in e["text"]]
    assert sum(losses[-5:]) < sum(losses[:5]) - 1.0, losses
    outcome = json.loads((work / OUTCOME).read_text())
    assert outcome["metrics"]["world_size"] == 2
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(outcome["path"]).config.num_hidden_layers == 2
