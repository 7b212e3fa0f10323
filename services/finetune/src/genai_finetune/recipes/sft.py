"""Supervised fine-tuning with transformers' ``Trainer``: LoRA, prompt tuning, prefix tuning (peft) and full
fine-tuning. Records are tokenized by ``genai_finetune.tokenization`` (loss on the assistant replies and
completions only), batches are padded per batch, and long texts are cut into max_seq_length blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer

from genai_finetune.execution import RecipeContext
from genai_finetune.methods import (
    FullConfig,
    LoraConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
)
from genai_finetune.recipes.common import callback, prepare, quiet, train_and_save, training_arguments
from genai_finetune.tokenization import Encoded, Tokenizers, encode
from genai_finetune.types import DatasetFormat, Level, Outcome


def _peft(config: Any, base_dir: str):
    """The peft config for the method's settings; None trains every weight."""
    import peft

    def lora(c: LoraConfig):
        return peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=c.rank, lora_alpha=c.alpha,
                               lora_dropout=c.dropout, target_modules=list(c.target_modules))

    def prompt(c: PromptTuningConfig):
        if c.init_text:
            return peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=c.num_virtual_tokens,
                                           prompt_tuning_init=peft.PromptTuningInit.TEXT,
                                           prompt_tuning_init_text=c.init_text, tokenizer_name_or_path=base_dir)
        return peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=c.num_virtual_tokens)

    def prefix(c: PrefixTuningConfig):
        return peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=c.num_virtual_tokens,
                                       prefix_projection=c.prefix_projection)

    builders = {LoraConfig: lora, PromptTuningConfig: prompt, PrefixTuningConfig: prefix, FullConfig: lambda c: None}
    return builders[type(config)](config)


def tokenized(tokenizer, fmt: DatasetFormat, records: list[dict], max_len: int) -> tuple[list[Encoded], int]:
    """The training examples and how many were cut: texts are split into max_len blocks, others truncated."""
    out: list[Encoded] = []
    cut = 0
    for record in records:
        encoded = encode(tokenizer, fmt, record)
        if fmt is DatasetFormat.TEXT:
            out.extend(Encoded(encoded.input_ids[i:i + max_len], encoded.labels[i:i + max_len])
                       for i in range(0, len(encoded), max_len))
            continue
        if len(encoded) > max_len:
            cut += 1
            encoded = encoded.truncated(max_len)
        if encoded.trainable:  # truncation may have cut away every trained token
            out.append(encoded)
    return out, cut


def as_dataset(examples: list[Encoded]) -> Dataset:
    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples],
                              "attention_mask": [[1] * len(e) for e in examples]})


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    spec = context.spec
    tokenizer = Tokenizers().get(Path(spec.base_model_dir))
    max_len = context.hyperparameters.max_seq_length or spec.context_length
    train_examples, cut = tokenized(tokenizer, context.format, context.train_records, max_len)
    eval_examples, _ = tokenized(tokenizer, context.format, context.eval_records, max_len)
    if cut:
        context.reporter.message(Level.WARNING, f"{cut} examples were longer than max_seq_length={max_len} and were truncated")
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_dir, dtype=torch.float32)
    peft_config = _peft(context.config, spec.base_model_dir)
    if peft_config is not None:
        import peft

        model = peft.get_peft_model(model, peft_config)
    job = callback(context, sum(e.trainable for e in train_examples), len(train_examples))
    trainer = quiet(Trainer(
        model=model,
        args=training_arguments(context, evaluate=bool(eval_examples)),
        train_dataset=as_dataset(train_examples),
        eval_dataset=as_dataset(eval_examples) if eval_examples else None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[job],
    ))
    return train_and_save(context, trainer, job, tokenizer)
