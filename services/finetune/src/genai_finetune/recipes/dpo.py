"""Direct preference optimization with TRL's ``DPOTrainer``: a LoRA adapter on the base model, the base model
(adapter disabled) as the reference. Conversations go to TRL as they are; it renders them with the model's
chat template, so training and serving see the same text."""

from __future__ import annotations

from pathlib import Path

import peft
import torch
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer

from genai_finetune.execution import RecipeContext
from genai_finetune.methods import DpoConfig
from genai_finetune.recipes.common import (
    callback,
    preference_dataset,
    prepare,
    quiet,
    train_and_save,
    training_arguments,
)
from genai_finetune.tokenization import Tokenizers, encode
from genai_finetune.types import Outcome


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    spec, config = context.spec, context.config
    assert isinstance(config, DpoConfig)
    tokenizer = Tokenizers().get(Path(spec.base_model_dir))
    max_len = context.hyperparameters.max_seq_length or spec.context_length
    tokens = sum(min(len(encode(tokenizer, context.format, r)), max_len) for r in context.train_records)
    job = callback(context, 2 * tokens, len(context.train_records))  # chosen and rejected
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_dir, dtype=torch.float32)
    lora = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=config.rank, lora_alpha=config.alpha,
                           lora_dropout=0.0, target_modules=list(config.target_modules))
    args = training_arguments(context, evaluate=bool(context.eval_records), config_class=DPOConfig,
                              beta=config.beta, loss_type=[config.loss_type], max_length=max_len)
    trainer = quiet(DPOTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=lora, callbacks=[job],
        train_dataset=preference_dataset(context.train_records),
        eval_dataset=preference_dataset(context.eval_records) if context.eval_records else None,
    ))
    return train_and_save(context, trainer, job, tokenizer, keep=("rewards/",))
