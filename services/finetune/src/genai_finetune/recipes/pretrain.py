"""Pretraining from random weights with transformers' ``Trainer``, for the three transformer kinds: a decoder
(causal LM), an encoder (masked LM) and an encoder-decoder (span corruption). The tokenizer is the one the
tokenizer service trained (the job holds a copy); the text is packed into blocks of ``seq_length`` tokens;
loss and held-out perplexity are streamed as the job's events; the result is saved with its tokenizer as a
plain transformers directory that the inference service (decoder, encoder-decoder) or the embedding service
(encoder, mean-pooled) loads.

The same function runs under ``torchrun``/``accelerate launch`` on several processes or GPUs: the Trainer
shards the batches (DDP, or FSDP/DeepSpeed from its arguments) and only the main process reports and saves.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datasets import Dataset
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

from genai_finetune.architectures import KINDS, build, prepare_tokenizer, sentinel_tokens
from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import DecoderPretrainConfig, EncoderDecoderPretrainConfig, EncoderPretrainConfig
from genai_finetune.methods import method
from genai_finetune.recipes.blocks import PerplexityTrainer, pack, perplexity, split, token_stream
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, training_arguments
from genai_finetune.recipes.distributed import is_main, report_on_main
from genai_finetune.types import Outcome


@dataclass(frozen=True)
class Objective:
    """How one kind turns blocks of token ids into training examples."""

    block_size: Callable[[Any], int]  # the raw tokens one example takes
    examples: Callable[[Any, Any, list[list[int]], int], Dataset]  # (config, tokenizer, blocks, seed)
    collator: Callable[[Any, Any, Any], Any]  # (config, tokenizer, model)


def _causal_examples(config, tokenizer, blocks, seed) -> Dataset:
    return Dataset.from_dict({"input_ids": blocks})


def _masked_examples(config, tokenizer, blocks, seed) -> Dataset:
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return Dataset.from_dict({"input_ids": [[cls, *b, sep] for b in blocks],
                              "special_tokens_mask": [[1, *[0] * len(b), 1] for b in blocks]})


def _span_examples(config: EncoderDecoderPretrainConfig, tokenizer, blocks, seed) -> Dataset:
    from genai_finetune.spancorruption import span_corrupt

    rng = random.Random(seed)  # one corruption per block, the same on every resume
    sentinels = tokenizer.convert_tokens_to_ids(sentinel_tokens())
    pairs = [span_corrupt(b, density=config.noise_density, mean_span=config.mean_span_length, sentinels=sentinels,
                          eos=tokenizer.eos_token_id, rng=rng) for b in blocks]
    return Dataset.from_dict({"input_ids": [p[0] for p in pairs], "labels": [p[1] for p in pairs]})


OBJECTIVES: dict[type, Objective] = {
    DecoderPretrainConfig: Objective(
        lambda c: c.seq_length, _causal_examples,
        lambda c, tok, model: DataCollatorForLanguageModeling(tok, mlm=False)),
    EncoderPretrainConfig: Objective(
        lambda c: c.seq_length - 2, _masked_examples,
        lambda c, tok, model: DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=c.mlm_probability)),
    EncoderDecoderPretrainConfig: Objective(
        lambda c: c.seq_length, _span_examples,
        lambda c, tok, model: DataCollatorForSeq2Seq(tok, model=model, padding=True, label_pad_token_id=-100)),
}


def load_tokenizer(config) -> Any:
    return prepare_tokenizer(config, AutoTokenizer.from_pretrained(config.tokenizer_path))


def corpus_blocks(config, tokenizer, texts: list[str]) -> list[list[int]]:
    objective = OBJECTIVES[type(config)]
    return pack(token_stream(tokenizer, texts, tokenizer.eos_token_id if tokenizer.eos_token_id is not None
                             else tokenizer.sep_token_id), objective.block_size(config))


def datasets(context: RecipeContext, tokenizer) -> tuple[Dataset, Dataset | None, int]:
    """(train, held out, train blocks) for the job's corpus."""
    config, seed = context.config, context.spec.seed
    objective = OBJECTIVES[type(config)]
    blocks = corpus_blocks(config, tokenizer, [r["text"] for r in context.train_records])
    if context.eval_records:
        held = corpus_blocks(config, tokenizer, [r["text"] for r in context.eval_records])
    else:
        blocks, held = split(blocks, config.eval_fraction, seed)
    train = objective.examples(config, tokenizer, blocks, seed)
    evaluation = objective.examples(config, tokenizer, held, seed + 1) if held else None
    return train, evaluation, len(blocks)


def trainer_for(context: RecipeContext, tokenizer, model, train: Dataset, evaluation: Dataset | None,
                callbacks: list) -> PerplexityTrainer:
    objective = OBJECTIVES[type(context.config)]
    return quiet(PerplexityTrainer(
        model=model, args=training_arguments(context, evaluate=evaluation is not None),
        train_dataset=train, eval_dataset=evaluation, data_collator=objective.collator(context.config, tokenizer, model),
        callbacks=callbacks,
    ))


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    config = context.config
    chosen = method(context.spec.method)
    tokenizer = load_tokenizer(config)
    train_set, eval_set, _ = datasets(context, tokenizer)
    model = build(config, tokenizer, context.spec.seed)  # gradient checkpointing: training_arguments reads the config
    h = context.hyperparameters
    callback = JobCallback(report_on_main(context.reporter), tokens_per_step=(h.batch_size or 1) * config.seq_length)
    trainer = trainer_for(context, tokenizer, model, train_set, eval_set, [callback])
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if callback.stopped is not None:
        return None
    metrics = final_metrics(callback, trainer)
    if eval_set is not None:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
        metrics["eval_perplexity"] = perplexity(metrics["eval_loss"])
    metrics.update(kind=KINDS[type(config)].name, parameters=sum(p.numel() for p in model.parameters()),
                   tokenizer=config.tokenizer, vocab_size=len(tokenizer), train_examples=len(train_set),
                   world_size=trainer.args.world_size)
    output = context.output_dir
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(output))
        tokenizer.save_pretrained(str(output))
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(output), metrics,
                   metrics["trained_tokens"])
