"""What every recipe shares: the Trainer callback that reports progress and obeys pause/cancel, the
training arguments from the job's hyperparameters, and the output bookkeeping.

Checkpoints are the Trainer's own (model or adapter, optimizer, scheduler, RNG states and the step, from
which it skips the batches already seen), so a resumed job continues exactly where the last one stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback, TrainingArguments, set_seed

from genai_finetune.execution import RecipeContext
from genai_finetune.methods import method
from genai_finetune.recipes import distributed
from genai_finetune.types import JobState, Level, Metrics, Outcome

# Trainer log keys reported as named metrics; anything numeric that is not listed goes to Metrics.extra.
_CORE = {"loss", "learning_rate", "epoch", "eval_loss", "total_flos", "train_runtime"}


class JobCallback(TrainerCallback):
    """Reports each logged step (loss, learning rate, tokens/s, ETA), evaluations and checkpoints, and
    stops training when the job is paused (after saving a checkpoint) or cancelled."""

    def __init__(self, reporter, tokens_per_step: float) -> None:
        self.reporter = reporter
        self.tokens_per_step = tokens_per_step
        self.stopped: JobState | None = None
        self.last: Metrics = Metrics()
        self._mark: tuple[float, int] | None = None
        self._started: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self._mark = self._started = (now, state.global_step)
        if state.global_step and state.is_world_process_zero:
            self.reporter.message(Level.INFO, f"Resumed from the checkpoint at step {state.global_step}")

    def on_step_end(self, args, state, control, **kwargs):
        wanted = self.reporter.state()
        if wanted is JobState.RUNNING:
            return control
        control.should_training_stop = True
        if wanted is JobState.PAUSED:
            control.should_save = True
        self.stopped = wanted or JobState.CANCELLED
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:  # under torchrun/accelerate, one process reports
            return
        logs = logs or {}
        if "eval_loss" in logs:
            # Other numeric evaluation results (such as eval_perplexity) travel in Metrics.extra.
            evaluated = {k: float(v) for k, v in logs.items() if k.startswith("eval_") and k != "eval_loss"
                         and isinstance(v, int | float) and math.isfinite(float(v))}
            self.last = replace(self.last, eval_loss=float(logs["eval_loss"]), extra={**self.last.extra, **evaluated})
            self.reporter.metrics(self.last, f"Step {state.global_step}/{state.max_steps}: "
                                             f"validation loss={logs['eval_loss']:.4f}")
            return
        if "loss" not in logs:
            return
        now = time.perf_counter()
        mark_time, mark_step = self._mark or (now, 0)
        steps = state.global_step - mark_step
        speed = self.tokens_per_step * steps / (now - mark_time) if steps and now > mark_time else None
        started_time, started_step = self._started or (now, 0)
        done = state.global_step - started_step
        eta = (now - started_time) / done * (state.max_steps - state.global_step) if done else None
        extra = {k: float(v) for k, v in logs.items()
                 if k not in _CORE and isinstance(v, int | float) and math.isfinite(float(v))}
        self.last = Metrics(
            step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0),
            train_loss=float(logs["loss"]), eval_loss=self.last.eval_loss,
            learning_rate=float(logs.get("learning_rate", 0.0)), tokens_per_second=speed, eta_seconds=eta,
            trained_tokens=int(self.tokens_per_step * state.global_step), extra=extra,
        )
        self._mark = (now, state.global_step)
        self.reporter.metrics(self.last, f"Step {state.global_step}/{state.max_steps}: "
                                         f"training loss={self.last.train_loss:.4f}")

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.reporter.checkpoint(state.global_step, self.last)


def training_arguments(context: RecipeContext, *, evaluate: bool, config_class=TrainingArguments,
                       **extra: Any) -> Any:
    """The Trainer's arguments from the job's resolved hyperparameters, for CPU."""
    h = context.hyperparameters
    # batch_size counts the examples of one optimizer step over every process (torchrun/accelerate set WORLD_SIZE)
    micro = max(1, (h.batch_size or 1) // ((h.gradient_accumulation_steps or 1) * distributed.world_size()))
    return config_class(
        output_dir=str(context.checkpoints_dir),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        learning_rate=h.learning_rate,
        num_train_epochs=h.n_epochs or 1,
        max_steps=h.max_steps or -1,
        lr_scheduler_type=h.lr_scheduler or "linear",
        warmup_steps=h.warmup_ratio or 0.0,  # a float below 1 is a fraction of the steps
        weight_decay=h.weight_decay or 0.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=h.checkpoint_steps or 10,
        save_total_limit=2,  # the newest complete checkpoint survives a save cut off by a kill
        eval_strategy="steps" if evaluate else "no",
        eval_steps=h.eval_steps if evaluate else None,
        seed=context.spec.seed,
        data_seed=context.spec.seed,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
        save_only_model=False,
        # Recompute activations in the backward pass (less memory, ~30 % more time): off unless the method's
        # settings ask for it (TRL's own default is on, which only pays on big models).
        gradient_checkpointing=bool(getattr(context.config, "gradient_checkpointing", False)),
        **extra,
    )


def prepare(context: RecipeContext) -> None:
    """Threads, and the job's seed before any model is built: the adapter's random initialization is then the
    same in every run of the job, which a resumed run relies on as much as an uninterrupted one."""
    torch.set_num_threads(context.spec.threads)
    set_seed(context.spec.seed)


def quiet(trainer) -> Any:
    """Without the callback that prints every log dict to stdout: the job's events carry them."""
    trainer.remove_callback(PrinterCallback)
    return trainer


def callback(context: RecipeContext, tokens_per_epoch: int, examples: int) -> JobCallback:
    """The job's callback; it turns steps into tokens with the epoch's token count over its steps."""
    steps_per_epoch = max(1, -(-examples // (context.hyperparameters.batch_size or 1)))
    return JobCallback(context.reporter, tokens_per_step=tokens_per_epoch / steps_per_epoch)


def preference_dataset(records: list[dict]) -> Dataset:
    """Preference records as TRL's conversational prompt/chosen/rejected rows (TRL applies the chat template)."""
    return Dataset.from_list([
        {"prompt": r["messages"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in records
    ])


def train_and_save(context: RecipeContext, trainer, job: JobCallback, tokenizer, *, merge: bool = False,
                   keep: tuple[str, ...] = ()) -> Outcome | None:
    """Train (from the last complete checkpoint, if any), save the result and describe it; None when the job
    was paused or cancelled on the way. ``keep`` names trainer metrics (prefixes) the artifact records."""
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if job.stopped is not None:
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    save(trainer, tokenizer, context.output_dir, model.merge_and_unload() if merge else model)
    metrics = final_metrics(job, trainer)
    metrics.update({k: v for k, v in job.last.extra.items() if k.startswith(keep) and keep})
    chosen = method(context.spec.method)
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(context.output_dir), metrics,
                   metrics["trained_tokens"])


def final_metrics(callback: JobCallback, trainer) -> dict[str, Any]:
    m = callback.last
    out: dict[str, Any] = {"step": m.step, "train_loss": m.train_loss, "trained_tokens": m.trained_tokens}
    if m.eval_loss is not None:
        out["eval_loss"] = m.eval_loss
    history = [entry for entry in trainer.state.log_history if "train_runtime" in entry]
    if history:
        out["train_runtime_s"] = history[-1]["train_runtime"]
    return out


def save(trainer, tokenizer, output, model=None) -> None:
    """The result, written by the main process only (under torchrun every process runs the recipe)."""
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        output.mkdir(parents=True, exist_ok=True)
        (model or trainer.model).save_pretrained(str(output))
        tokenizer.save_pretrained(str(output))
    trainer.accelerator.wait_for_everyone()
