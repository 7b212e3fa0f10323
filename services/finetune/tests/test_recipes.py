"""Every method's recipe trains the tiny model for real (Trainer / TRL), reports its steps, checkpoints and
result, and stops on pause or cancel."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from genai_finetune import execution
from genai_finetune.hyperparameters import resolve
from genai_finetune.methods import METHODS
from genai_finetune.records import parse
from genai_finetune.testing import FACTS, PREFERENCES, jsonl
from genai_finetune.types import ArtifactKind, Hyperparameters, JobState, Serving

pytestmark = pytest.mark.slow


class Reporter:
    """An ``execution.Reporter`` that keeps everything; ``state`` says RUNNING, or ``stop_as`` from the
    ``stop_after``-th step on."""

    def __init__(self, stop_after: int | None = None, stop_as: JobState = JobState.PAUSED) -> None:
        self.seen: list = []
        self.texts: list[str] = []
        self.messages: list[str] = []
        self.checkpoints: list[int] = []
        self._stop_after, self._stop_as, self._steps = stop_after, stop_as, 0

    def message(self, level, text):
        self.messages.append(text)

    def metrics(self, metrics, text):
        self.seen.append(metrics)
        self.texts.append(text)

    def checkpoint(self, step, metrics):
        self.checkpoints.append(step)

    def state(self):
        self._steps += 1
        return self._stop_as if self._stop_after and self._steps >= self._stop_after else JobState.RUNNING


def spec(tmp_path: Path, tiny_dir: Path, method: str, records: list[dict], config: dict | None = None,
         validation: list[dict] | None = None, **hyper) -> execution.RunSpec:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(records))
    held_out = tmp_path / "validation.jsonl"
    if validation:
        held_out.write_bytes(jsonl(validation))
    fmt, parsed = parse(path.read_bytes(), path.name)
    chosen = METHODS[method]
    h = resolve(Hyperparameters(**hyper), chosen, examples=len(parsed), context_length=512)
    return execution.RunSpec(
        job_id="ftjob-test", method=method, config=config or {}, hyperparameters=asdict(h), seed=3, base_model="tiny",
        base_model_dir=str(tiny_dir), base_model_revision="r", context_length=512, training_path=str(path),
        training_filename=path.name, training_format=fmt.value, validation_path=str(held_out) if validation else "",
        validation_filename=held_out.name if validation else "",
        work_dir=str(tmp_path / "work"), threads=2, served_name="ft:tiny:t:ftjob-test")


@pytest.mark.parametrize(
    ("method", "config", "kind", "serving", "files"),
    [
        ("lora", {"rank": 4}, ArtifactKind.ADAPTER, Serving.ADAPTER, "adapter_model.safetensors"),
        ("prompt_tuning", {"num_virtual_tokens": 4}, ArtifactKind.ADAPTER, Serving.MODEL, "adapter_model.safetensors"),
        ("prefix_tuning", {"num_virtual_tokens": 4}, ArtifactKind.ADAPTER, Serving.MODEL, "adapter_model.safetensors"),
        ("full", {}, ArtifactKind.MODEL, Serving.MODEL, "model.safetensors"),
    ],
)
def test_supervised_methods_learn_and_save(tmp_path, tiny_dir, method, config, kind, serving, files):
    reporter = Reporter()
    outcome = execution.run(spec(tmp_path, tiny_dir, method, FACTS, config, n_epochs=4, batch_size=4,
                                 learning_rate_multiplier=5.0 if method == "full" else 3.0, checkpoint_steps=4),
                            reporter)
    assert outcome is not None and outcome.kind is kind and outcome.serving is serving
    assert (Path(outcome.path) / files).exists()
    losses = [m.train_loss for m in reporter.seen]
    assert len(losses) == 8 and losses[-1] < losses[0]  # it learns
    assert reporter.checkpoints == [4, 8]
    last = reporter.seen[-1]
    assert last.step == last.total_steps == 8 and last.trained_tokens > 0 and last.tokens_per_second > 0
    assert outcome.metrics["step"] == 8 and outcome.trained_tokens == last.trained_tokens


def test_dpo_raises_the_chosen_reward_over_the_rejected(tmp_path, tiny_dir):
    reporter = Reporter()
    outcome = execution.run(spec(tmp_path, tiny_dir, "dpo", PREFERENCES, {"rank": 4, "beta": 0.5}, n_epochs=3,
                                 learning_rate_multiplier=4.0), reporter)
    assert outcome is not None and outcome.kind is ArtifactKind.ADAPTER and outcome.serving is Serving.ADAPTER
    assert outcome.metrics["rewards/margins"] > 0 and reporter.seen[-1].train_loss < reporter.seen[0].train_loss


def test_reward_model_scores_the_chosen_reply_higher(tmp_path, tiny_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reporter = Reporter()
    outcome = execution.run(spec(tmp_path, tiny_dir, "reward_model", PREFERENCES, {"rank": 4}, n_epochs=6,
                                 learning_rate_multiplier=10.0), reporter)
    assert outcome is not None and outcome.kind is ArtifactKind.REWARD_MODEL and outcome.serving is Serving.NONE
    model = AutoModelForSequenceClassification.from_pretrained(outcome.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(outcome.path)

    def score(question: str, reply: str) -> float:
        text = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": reply}], tokenize=False)
        with torch.no_grad():
            return float(model(**tokenizer(text, return_tensors="pt")).logits[0, 0])

    held_out = [(f"Describe the number {i}.", f"Yes! {i} is wonderful.", f"No. {i} is dull.") for i in (11, 12, 13)]
    assert all(score(q, good) > score(q, bad) for q, good, bad in held_out)


def test_pause_stops_after_a_checkpoint_and_resume_continues(tmp_path, tiny_dir):
    run = spec(tmp_path, tiny_dir, "lora", FACTS, {"rank": 4}, n_epochs=3, checkpoint_steps=100)
    paused = Reporter(stop_after=3)
    assert execution.run(run, paused) is None
    assert paused.checkpoints == [3]  # saved at the step it paused on, though checkpoint_steps is 100
    resumed = Reporter()
    outcome = execution.run(run, resumed)
    assert outcome is not None
    assert resumed.messages[0] == "Resumed from the checkpoint at step 3"
    assert [m.step for m in resumed.seen] == [4, 5, 6]


def test_cancel_stops_without_saving(tmp_path, tiny_dir):
    reporter = Reporter(stop_after=2, stop_as=JobState.CANCELLED)
    run = spec(tmp_path, tiny_dir, "lora", FACTS, {"rank": 4}, n_epochs=3, checkpoint_steps=100)
    assert execution.run(run, reporter) is None
    assert reporter.checkpoints == [] and len(reporter.seen) == 2


def test_a_validation_file_reports_eval_loss(tmp_path, tiny_dir):
    reporter = Reporter()
    outcome = execution.run(spec(tmp_path, tiny_dir, "lora", FACTS[:6], {"rank": 4}, validation=FACTS[6:],
                                 n_epochs=2, eval_steps=2, learning_rate_multiplier=3.0), reporter)
    evaluated = [m for m, text in zip(reporter.seen, reporter.texts, strict=True) if "validation loss" in text]
    assert evaluated and outcome.metrics["eval_loss"] == evaluated[-1].eval_loss
    assert [m.step for m in evaluated] == [2, 4] and evaluated[1].eval_loss < evaluated[0].eval_loss
