"""Direct preference optimization with TRL's ``DPOTrainer``: a LoRA adapter on the base model, the base model
(adapter disabled) as the reference. Conversations go to TRL as they are; it renders them with the model's
chat template, so training and serving see the same text."""

from __future__ import annotations

from pathlib import Path

import peft
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer

from genai_finetune.execution import RecipeContext
from genai_finetune.methods import DpoConfig, method
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, save, training_arguments
from genai_finetune.tokenization import Tokenizers, encode
from genai_finetune.types import Outcome


def preference_dataset(records: list[dict]) -> Dataset:
    return Dataset.from_list([
        {"prompt": r["messages"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in records
    ])


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    spec, config = context.spec, context.config
    assert isinstance(config, DpoConfig)
    chosen_method = method(spec.method)
    tokenizer = Tokenizers().get(Path(spec.base_model_dir))
    max_len = context.hyperparameters.max_seq_length or spec.context_length
    tokens = sum(min(len(encode(tokenizer, context.format, r)), max_len) for r in context.train_records)
    steps_per_epoch = max(1, -(-len(context.train_records) // (context.hyperparameters.batch_size or 1)))
    callback = JobCallback(context.reporter, tokens_per_step=2 * tokens / steps_per_epoch)  # chosen and rejected
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_dir, dtype=torch.float32)
    lora = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=config.rank, lora_alpha=config.alpha,
                           lora_dropout=0.0, target_modules=list(config.target_modules))
    args = training_arguments(context, evaluate=bool(context.eval_records), config_class=DPOConfig,
                              beta=config.beta, loss_type=[config.loss_type], max_length=max_len)
    trainer = quiet(DPOTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=lora, callbacks=[callback],
        train_dataset=preference_dataset(context.train_records),
        eval_dataset=preference_dataset(context.eval_records) if context.eval_records else None,
    ))
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if callback.stopped is not None:
        return None
    output = context.output_dir
    save(trainer, tokenizer, output, trainer.accelerator.unwrap_model(trainer.model))
    metrics = final_metrics(callback, trainer)
    metrics.update({k: v for k, v in callback.last.extra.items() if k.startswith("rewards/")})
    return Outcome(chosen_method.kind, chosen_method.serving, chosen_method.artifact_format, str(output), metrics,
                   metrics["trained_tokens"])
