"""A reward model with TRL's ``RewardTrainer``: the base model with a scalar head (sequence classification,
one label), LoRA on its layers and the head trained in full, so that the chosen reply scores above the
rejected one. The result is saved merged, as a plain transformers sequence classifier:

    model = AutoModelForSequenceClassification.from_pretrained(artifact.path)
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}], tokenize=False)
    score = model(**tokenizer(text, return_tensors="pt")).logits[0, 0]   # higher is better
"""

from __future__ import annotations

from pathlib import Path

import peft
import torch
from transformers import AutoModelForSequenceClassification
from trl import RewardConfig, RewardTrainer

from genai_finetune.execution import RecipeContext
from genai_finetune.methods import RewardModelConfig
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
    assert isinstance(config, RewardModelConfig)
    tokenizer = Tokenizers().get(Path(spec.base_model_dir))
    max_len = context.hyperparameters.max_seq_length or spec.context_length
    tokens = sum(min(len(encode(tokenizer, context.format, r)), max_len) for r in context.train_records)
    job = callback(context, 2 * tokens, len(context.train_records))  # chosen and rejected
    model = AutoModelForSequenceClassification.from_pretrained(spec.base_model_dir, num_labels=1,
                                                               dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=config.rank, lora_alpha=config.alpha,
                           lora_dropout=0.0, target_modules=list(config.target_modules))
    args = training_arguments(context, evaluate=bool(context.eval_records), config_class=RewardConfig,
                              max_length=max_len)
    trainer = quiet(RewardTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=lora, callbacks=[job],
        train_dataset=preference_dataset(context.train_records),
        eval_dataset=preference_dataset(context.eval_records) if context.eval_records else None,
    ))
    return train_and_save(context, trainer, job, tokenizer, merge=True, keep=("accuracy", "margin"))
