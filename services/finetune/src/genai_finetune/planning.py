"""What the model builder's methods check and resolve when a job is created, before anything is queued: the
tokenizer a from-scratch model uses (fetched from the tokenizer service and kept, content-addressed, under the
data directory), the number of training examples (packed blocks, not lines), and an estimate of the memory the
run needs against the limit, so a config that cannot fit fails at once with the numbers.

A registry maps a method's settings class to its planning function; methods without an entry are planned by
``jobs`` as before (records are examples, lengths checked against the base model's context).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genai_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

from genai_finetune import architectures, memory
from genai_finetune.basemodels import BaseModel
from genai_finetune.datafiles import Datasets
from genai_finetune.labconfigs import (
    ContinualPretrainConfig,
    DecoderPretrainConfig,
    DiffusionConfig,
    DistillConfig,
    EncoderDecoderPretrainConfig,
    EncoderPretrainConfig,
    QuantizeConfig,
    RerankerConfig,
)
from genai_finetune.methods import Method
from genai_finetune.ports import TokenizerSource
from genai_finetune.types import Artifact, ArtifactKind, Dataset, Hyperparameters

Resolve = Callable[[int], Hyperparameters]  # the job's hyperparameters for a number of training examples


@dataclass(frozen=True)
class Inputs:
    method: Method
    config: Any
    base: BaseModel
    training: Dataset
    validation: Dataset | None
    resolve: Resolve


@dataclass(frozen=True)
class Planned:
    config: Any  # the settings with the fields "set by the service" filled in
    hyperparameters: Hyperparameters
    examples: int
    messages: list[str]


class Planner:
    def __init__(self, datasets: Datasets, tokenizers: TokenizerSource, *, data_dir: Path, memory_limit: int,
                 artifacts: Callable[[str], Artifact | None] = lambda name: None) -> None:
        self._datasets = datasets
        self._artifacts = artifacts  # an artifact by id or served name (what a quantization reads)
        self._tokenizers = tokenizers
        self._tokenizers_dir = data_dir / "tokenizers"
        self.memory_limit = memory_limit

    def plan(self, inputs: Inputs) -> Planned | None:
        """The planned job, or None for a method this module does not plan."""
        step = PLANS.get(type(inputs.config))
        return step(self, inputs) if step else None

    # -- tokenizers ------------------------------------------------------------------------------------

    def tokenizer_copy(self, tokenizer_id: str) -> Path:
        """The tokenizer service's files of ``tokenizer_id``, kept under tokenizers/<revision> (once)."""
        fetched = self._tokenizers.files(tokenizer_id)
        target = self._tokenizers_dir / fetched.revision
        if not target.is_dir():
            tmp = self._tokenizers_dir / f".{fetched.revision}.{uuid.uuid4().hex}"
            tmp.mkdir(parents=True)
            for name, content in fetched.files:
                (tmp / Path(name).name).write_bytes(content)
            try:
                os.replace(tmp, target)
            except OSError:  # another job copied it meanwhile
                pass
        return target

    # -- memory ------------------------------------------------------------------------------------------

    def check_memory(self, estimate: memory.Estimate, fields: list[str]) -> str:
        if estimate.total > self.memory_limit:
            text = (f"training needs about {memory.gib(estimate.total)} ({estimate.describe()}), more than the "
                    f"limit of {memory.gib(self.memory_limit)} (GENAI_FINETUNE_MAX_TRAIN_MEMORY_BYTES); make the "
                    f"model or the batch smaller ({', '.join(fields)})")
            raise InvalidArgument(text, [FieldViolation(f, "too large for the memory limit") for f in fields],
                                  reason="MEMORY_ESTIMATE")
        return f"Memory estimate: {memory.gib(estimate.total)} of the {memory.gib(self.memory_limit)} limit"

    def records(self, dataset: Dataset) -> list[dict]:
        return self._datasets.records(dataset)

    def texts(self, dataset: Dataset | None) -> list[str]:
        return [r["text"] for r in self._datasets.records(dataset)] if dataset else []

    def artifact(self, name: str) -> Artifact | None:
        return self._artifacts(name)


def _micro_batch(h: Hyperparameters) -> int:
    return max(1, (h.batch_size or 1) // (h.gradient_accumulation_steps or 1))


def _pretrain(planner: Planner, inputs: Inputs) -> Planned:
    from transformers import AutoTokenizer

    from genai_finetune.recipes.blocks import split
    from genai_finetune.recipes.pretrain import OBJECTIVES, corpus_blocks

    config = inputs.config
    kind = architectures.KINDS[type(config)]
    path = planner.tokenizer_copy(config.tokenizer)
    tokenizer = architectures.prepare_tokenizer(config, AutoTokenizer.from_pretrained(str(path)))
    missing = architectures.missing_roles(kind, tokenizer)
    if missing:
        raise InvalidArgument.for_field(
            "method_config.tokenizer", f"'{config.tokenizer}' has no {', '.join(missing)} token, which an {kind.name} "
            "needs; train one with those special tokens (a WordPiece tokenizer has [CLS], [SEP], [PAD], [MASK])")
    config = replace(config, tokenizer_path=str(path))
    blocks = corpus_blocks(config, tokenizer, planner.texts(inputs.training))
    held = corpus_blocks(config, tokenizer, planner.texts(inputs.validation)) if inputs.validation else []
    if not inputs.validation:
        blocks, held = split(blocks, config.eval_fraction, 0)
    size = OBJECTIVES[type(config)].block_size(config)
    if len(blocks) < 2 or (config.eval_fraction > 0 and not held):
        raise InvalidArgument.for_field(
            "training_file", f"the corpus makes only {len(blocks) + len(held)} blocks of {size} tokens with "
            f"'{config.tokenizer}'; pretraining needs several (send more text or lower method_config.seq_length)")
    hyperparameters = inputs.resolve(len(blocks))
    parameters = architectures.parameters(config, tokenizer)
    shape = memory.Shape(parameters, parameters, config.hidden_size, config.num_layers * (2 if kind.name ==
                         "encoder-decoder" else 1), config.num_heads, len(tokenizer))
    estimate = memory.estimate(shape, micro_batch=_micro_batch(hyperparameters), seq_length=config.seq_length,
                               checkpointing=config.gradient_checkpointing)
    fits = planner.check_memory(estimate, ["method_config.hidden_size", "method_config.num_layers",
                                           "method_config.seq_length", "hyperparameters.batch_size"])
    return Planned(config, hyperparameters, len(blocks), [
        f"{kind.name.capitalize()} of {parameters / 1e6:.2f}M parameters with tokenizer '{config.tokenizer}' "
        f"({len(tokenizer)} tokens): {len(blocks)} training and {len(held)} held-out blocks of {size} tokens. {fits}"])


def _base_shape(directory: Path) -> tuple[Any, int]:
    """The base model's config and its number of weights (counted on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(directory))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return config, sum(p.numel() for p in model.parameters())


def _lm_blocks(planner: Planner, inputs: Inputs, size: int, fraction: float) -> tuple[int, int]:
    """(training blocks, held-out blocks) of ``size`` base-model tokens, as the text recipes cut them."""
    from transformers import AutoTokenizer

    from genai_finetune.recipes.blocks import pack, record_ids, split

    tokenizer = AutoTokenizer.from_pretrained(str(inputs.base.directory))

    def ids(dataset: Dataset) -> list[int]:
        return record_ids(tokenizer, dataset.format, planner.records(dataset))

    blocks = pack(ids(inputs.training), size)
    held = pack(ids(inputs.validation), size) if inputs.validation else []
    if not inputs.validation:
        blocks, held = split(blocks, fraction, 0)
    if len(blocks) < 2 or not held:
        raise InvalidArgument.for_field(
            "training_file", f"the text makes only {len(blocks) + len(held)} blocks of {size} tokens; send more text "
            "(some are held out to measure perplexity) or lower method_config.seq_length")
    return len(blocks), len(held)


def _continual(planner: Planner, inputs: Inputs) -> Planned:
    config = inputs.config
    base_config, parameters = _base_shape(inputs.base.directory)
    train, held = _lm_blocks(planner, inputs, config.seq_length, config.eval_fraction)
    hyperparameters = inputs.resolve(train)
    shape = memory.Shape(parameters, parameters, base_config.hidden_size, base_config.num_hidden_layers,
                         base_config.num_attention_heads, base_config.vocab_size)
    fits = planner.check_memory(memory.estimate(shape, micro_batch=_micro_batch(hyperparameters),
                                                seq_length=config.seq_length, checkpointing=config.gradient_checkpointing),
                                ["method_config.seq_length", "hyperparameters.batch_size"])
    return Planned(config, hyperparameters, train, [
        f"Continued pretraining of {inputs.base.id} ({parameters / 1e6:.1f}M parameters, all trained): {train} "
        f"training and {held} held-out blocks of {config.seq_length} tokens. {fits}"])


def _distill(planner: Planner, inputs: Inputs) -> Planned:
    import torch
    from transformers import AutoModelForCausalLM

    from genai_finetune.recipes.distill import student_config

    config = inputs.config
    teacher_config, teacher = _base_shape(inputs.base.directory)
    with torch.device("meta"):
        student = sum(p.numel() for p in AutoModelForCausalLM.from_config(
            student_config(config, teacher_config)).parameters())
    train, held = _lm_blocks(planner, inputs, config.seq_length, config.eval_fraction)
    hyperparameters = inputs.resolve(train)
    micro = _micro_batch(hyperparameters)
    # The teacher only runs forward: its weights and one batch of its logits and layer outputs.
    teacher_forward = 4 * micro * config.seq_length * (teacher_config.vocab_size + 2 * teacher_config.hidden_size)
    shape = memory.Shape(student + teacher, student, config.hidden_size, config.num_layers, config.num_heads,
                         teacher_config.vocab_size, frozen_activations=teacher_forward)
    fits = planner.check_memory(memory.estimate(shape, micro_batch=micro, seq_length=config.seq_length),
                                ["method_config.hidden_size", "method_config.num_layers", "method_config.seq_length",
                                 "hyperparameters.batch_size"])
    return Planned(config, hyperparameters, train, [
        f"Distillation of {inputs.base.id} ({teacher / 1e6:.1f}M parameters) into a {student / 1e6:.2f}M-parameter "
        f"student: {train} training and {held} held-out blocks of {config.seq_length} tokens. {fits}"])


def _reranker(planner: Planner, inputs: Inputs) -> Planned:
    from genai_finetune.recipes.reranker import collection, split_queries

    config = inputs.config
    records = planner.records(inputs.training)
    train, held = split_queries(records, config.eval_fraction, 0)
    if len(train) < 2:
        raise InvalidArgument.for_field("training_file", f"the pairs hold {len(train) + len(held)} distinct queries; "
                                        "a reranker needs several (some are held out to measure nDCG@10)")
    training = set(train)
    pairs = sum(1 + config.negatives_per_query + len(r["negatives"]) for r in records if r["query"] in training)
    return Planned(config, inputs.resolve(pairs), pairs, [
        f"Cross-encoder from {inputs.base.id}: about {pairs} labelled pairs from {len(train)} queries, "
        f"{config.negatives_per_query} negatives each mined among {len(collection(records))} documents; "
        f"{len(held)} queries held out for nDCG@10"])


def _diffusion(planner: Planner, inputs: Inputs) -> Planned:
    config = inputs.config
    records = planner.records(inputs.training)
    labels = {r["label"] for r in records if r["label"]}
    if len(records) < 20:
        raise InvalidArgument.for_field("training_file", f"{len(records)} images are too few to learn from; send at "
                                        "least 20 (a tenth is held out to check the quality)")
    if config.conditional and labels and any(not r["label"] for r in records):
        raise InvalidArgument.for_field("training_file", "some images have a label and some do not; label every "
                                        "image or set method_config.conditional to false")
    kept = len(records) - max(1, len(records) // 10)
    kind = f"class-conditioned on {len(labels)} labels" if config.conditional and labels else "unconditional"
    return Planned(config, inputs.resolve(kept), kept, [
        f"Diffusion model ({kind}) on {kept} images of {config.image_size}x{config.image_size}; "
        f"{len(records) - kept} held out for the quality classifier"])


# Which artifacts a quantization can read: (kind, format) -> how the recipe loads it.
QUANTIZABLE = {(ArtifactKind.ADAPTER, "peft-lora"): "adapter", (ArtifactKind.MODEL, "safetensors"): "model"}


def _quantize(planner: Planner, inputs: Inputs) -> Planned:
    from transformers import AutoTokenizer

    from genai_finetune.recipes.blocks import token_stream

    config = inputs.config
    source = ""
    if config.source:
        artifact = planner.artifact(config.source)
        if artifact is None:
            raise NotFound(f"method_config.source: no artifact or fine-tuned model '{config.source}'",
                           resource_type="artifact", resource_name=config.source)
        kind = QUANTIZABLE.get((artifact.kind, artifact.format))
        if kind is None:
            raise InvalidArgument.for_field("method_config.source", f"'{config.source}' is a {artifact.format} "
                                            f"{artifact.kind.value}; a quantization reads a LoRA adapter or full weights")
        if kind == "adapter" and artifact.base_model != inputs.base.id:
            raise InvalidArgument.for_field("base_model", f"the adapter '{config.source}' was trained on "
                                            f"'{artifact.base_model}'; name that base model")
        config = replace(config, source_path=artifact.path, source_kind=kind)
        source = f"{artifact.method} artifact {artifact.id} ({kind}, merged first)" if kind == "adapter" else             f"{artifact.method} artifact {artifact.id}"
    else:
        config = replace(config, source_path="", source_kind="")
    tokenizer = AutoTokenizer.from_pretrained(config.source_path if config.source_kind == "model"
                                              else str(inputs.base.directory))
    tokens = len(token_stream(tokenizer, planner.texts(inputs.training), tokenizer.eos_token_id))
    if tokens < 64:
        raise InvalidArgument.for_field("training_file", f"the text has {tokens} tokens; the perplexities need at "
                                        "least 64 (eval_tokens of them are used)")
    return Planned(config, inputs.resolve(1), 1, [
        f"Quantization of {source or inputs.base.id} to {config.format}, measured on "
        f"{min(tokens, config.eval_tokens)} tokens of the dataset"])


PLANS: dict[type, Callable[[Planner, Inputs], Planned]] = {
    QuantizeConfig: _quantize,
    DiffusionConfig: _diffusion,
    RerankerConfig: _reranker,
    DecoderPretrainConfig: _pretrain,
    EncoderPretrainConfig: _pretrain,
    EncoderDecoderPretrainConfig: _pretrain,
    ContinualPretrainConfig: _continual,
    DistillConfig: _distill,
}


def ensure_fixed_base(method: Method, base_model: str) -> str:
    """The base a fixed-base method trains on; InvalidArgument when the request names another."""
    if base_model and base_model != method.fixed_base:
        raise InvalidArgument.for_field(
            "base_model", f"method '{method.name}' always starts from '{method.fixed_base}'; leave base_model empty")
    return method.fixed_base


def no_planner(method: Method) -> FailedPrecondition:
    return FailedPrecondition(f"method '{method.name}' is not available in this deployment (no planner)",
                              reason="METHOD_UNAVAILABLE")
