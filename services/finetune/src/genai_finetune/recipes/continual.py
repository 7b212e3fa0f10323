"""Continued pretraining with transformers' ``Trainer``: the base model learns raw text of a new domain (causal
LM, every weight, text packed into blocks). Perplexity is measured before and after on a held-out slice of the
new text and on the original domain (GSM8K text, as the inference benchmark reads it), so that both what was
learned and what was forgotten are visible in the job's events and the artifact's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling

from genai_finetune.corpora import TEXTS
from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import ContinualPretrainConfig
from genai_finetune.methods import method
from genai_finetune.recipes.blocks import PerplexityTrainer, base_tokenizer, job_blocks, pack, perplexity, token_stream
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, training_arguments
from genai_finetune.recipes.distributed import is_main, report_on_main
from genai_finetune.types import Level, Outcome


def original_blocks(config: ContinualPretrainConfig, tokenizer, size: int) -> list[list[int]]:
    ids = token_stream(tokenizer, [TEXTS[config.original_domain]()], tokenizer.eos_token_id)
    return pack(ids[:max(config.original_tokens, size)], size)


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    config, spec = context.config, context.spec
    assert isinstance(config, ContinualPretrainConfig)
    chosen = method(spec.method)
    tokenizer = base_tokenizer(spec.base_model_dir)
    size = config.seq_length
    blocks, held = job_blocks(context, tokenizer, size, config.eval_fraction)
    new_eval = Dataset.from_dict({"input_ids": held})
    original_eval = Dataset.from_dict({"input_ids": original_blocks(config, tokenizer, size)})
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_dir, dtype=torch.float32)
    h = context.hyperparameters
    reporter = report_on_main(context.reporter)
    callback = JobCallback(reporter, tokens_per_step=(h.batch_size or 1) * size)
    trainer = quiet(PerplexityTrainer(
        model=model, args=training_arguments(context, evaluate=True), train_dataset=Dataset.from_dict(
            {"input_ids": blocks}), eval_dataset=new_eval,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback]))
    resumed = context.last_checkpoint()

    def measure(when: str) -> dict[str, float]:
        new = perplexity(trainer.evaluate(new_eval, metric_key_prefix="eval_new")["eval_new_loss"])
        original = perplexity(trainer.evaluate(original_eval, metric_key_prefix="eval_original")["eval_original_loss"])
        reporter.message(Level.INFO, f"Perplexity {when} training: new domain (held out) {new:.3f}, original "
                                     f"domain ({config.original_domain}) {original:.3f}")
        return {f"perplexity_new_{when}": new, f"perplexity_original_{when}": original}

    saved = Path(spec.work_dir) / "perplexity_before.json"  # measured once, kept for a resumed run
    if saved.exists():
        before = json.loads(saved.read_text())
    else:
        before = measure("before")
        if is_main():
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(before))
    trainer.train(resume_from_checkpoint=resumed)
    if callback.stopped is not None:
        return None
    metrics = {**final_metrics(callback, trainer), **before, **measure("after"), "train_blocks": len(blocks),
               "seq_length": size}
    output = context.output_dir
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(output))
        tokenizer.save_pretrained(str(output))
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(output), metrics, metrics["trained_tokens"])
