"""The registry of training methods: each entry names its settings (a frozen dataclass with CPU-sized
defaults), the dataset formats it trains on, what its result is and how it is served, and the recipe that
runs it (``module:function``, imported only by the worker that trains).

Adding a method (continued pretraining, distillation, quantization, a reranker, a diffusion model...) is a
new config dataclass, a new ``Method`` row here and a recipe module; the queue, the workers, the events and
the artifact registry stay as they are.

    >>> METHODS["lora"].build_config({"rank": 4}).rank
    4
    >>> sorted(METHODS)[:3]
    ['dpo', 'full', 'lora']
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from genai_core.errors import FieldViolation, InvalidArgument

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
from genai_finetune.types import MINILM, SCRATCH, ArtifactKind, DatasetFormat, Hyperparameters, Serving

SUPERVISED = frozenset({DatasetFormat.CHAT, DatasetFormat.COMPLETION, DatasetFormat.TEXT})
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraConfig:
    """A LoRA adapter: low-rank updates of the named linear layers."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LINEAR_MODULES

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not 1 <= self.rank <= 256:
            out.append(("rank", "must be between 1 and 256"))
        if not 1 <= self.alpha <= 1024:
            out.append(("alpha", "must be between 1 and 1024"))
        if not 0.0 <= self.dropout < 1.0:
            out.append(("dropout", "must be in [0, 1)"))
        if not self.target_modules:
            out.append(("target_modules", "name at least one module, such as q_proj"))
        return out


@dataclass(frozen=True)
class PromptTuningConfig:
    """Soft prompt tuning: trainable virtual token embeddings prepended to every input."""

    num_virtual_tokens: int = 16
    init_text: str = "Answer the question correctly and briefly."  # empty: random initialization

    def problems(self) -> list[tuple[str, str]]:
        return [] if 1 <= self.num_virtual_tokens <= 512 else [("num_virtual_tokens", "must be between 1 and 512")]


@dataclass(frozen=True)
class PrefixTuningConfig:
    """Prefix tuning: trainable keys and values prepended to every layer's attention."""

    num_virtual_tokens: int = 16
    prefix_projection: bool = False  # reparameterize through an MLP (more parameters, steadier training)

    def problems(self) -> list[tuple[str, str]]:
        return [] if 1 <= self.num_virtual_tokens <= 512 else [("num_virtual_tokens", "must be between 1 and 512")]


@dataclass(frozen=True)
class FullConfig:
    """Every weight is trained; the result is a model of its own."""

    gradient_checkpointing: bool = False  # trade compute for memory on bigger models

    def problems(self) -> list[tuple[str, str]]:
        return []


@dataclass(frozen=True)
class DpoConfig:
    """Direct preference optimization (TRL) with a LoRA adapter; the reference is the base model."""

    beta: float = 0.1
    loss_type: str = "sigmoid"  # TRL's names: sigmoid (DPO), ipo, hinge, ...
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = LINEAR_MODULES
    gradient_checkpointing: bool = False

    def problems(self) -> list[tuple[str, str]]:
        out = [] if 0.0 < self.beta <= 10.0 else [("beta", "must be in (0, 10]")]
        if self.loss_type not in ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "bco_pair", "apo_zero"):
            out.append(("loss_type", "use sigmoid, ipo, hinge, robust, exo_pair, bco_pair or apo_zero"))
        return out + LoraConfig(self.rank, self.alpha, 0.0, self.target_modules).problems()


@dataclass(frozen=True)
class RewardModelConfig:
    """A reward model (TRL RewardTrainer): the base model with a scalar head, trained with LoRA so the
    chosen reply scores above the rejected one; saved merged, as a sequence classifier."""

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = LINEAR_MODULES
    gradient_checkpointing: bool = False

    def problems(self) -> list[tuple[str, str]]:
        return LoraConfig(self.rank, self.alpha, 0.0, self.target_modules).problems()


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    formats: frozenset[DatasetFormat]
    config: type  # a frozen dataclass with defaults and ``problems()``
    recipe: str  # "module:function", run by the worker
    kind: ArtifactKind
    serving: Serving
    artifact_format: str
    base_learning_rate: float  # learning_rate_multiplier 1.0 means this
    defaults: Hyperparameters = field(default_factory=Hyperparameters)  # what "auto" means for this method
    # Set for methods that do not tune a base model of the request's choosing: the base they always start from
    # ("scratch" for random weights); base_model must then be empty or this.
    fixed_base: str = ""

    def build_config(self, raw: dict[str, Any] | None, path: str = "method_config") -> Any:
        """The method's settings from a JSON object: unknown keys, wrong types and bad values are
        InvalidArgument naming ``path.key``; missing keys take the defaults."""
        return build_dataclass(self.config, raw or {}, path)

    def default_config(self) -> dict[str, Any]:
        return config_dict(self.config())


_SUPERVISED_DEFAULTS = Hyperparameters(n_epochs=3, batch_size=4, learning_rate_multiplier=1.0, warmup_ratio=0.0,
                                       gradient_accumulation_steps=1, weight_decay=0.0, lr_scheduler="linear")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("lora", "Supervised fine-tuning of a LoRA adapter (the default); served beside the base model",
               SUPERVISED, LoraConfig, "genai_finetune.recipes.sft:train", ArtifactKind.ADAPTER, Serving.ADAPTER,
               "peft-lora", 1e-3, _SUPERVISED_DEFAULTS),
        Method("prompt_tuning", "Supervised soft prompt tuning; served as a model of its own",
               SUPERVISED, PromptTuningConfig, "genai_finetune.recipes.sft:train", ArtifactKind.ADAPTER,
               Serving.MODEL, "peft-prompt-tuning", 3e-2, _SUPERVISED_DEFAULTS),
        Method("prefix_tuning", "Supervised prefix tuning; served as a model of its own",
               SUPERVISED, PrefixTuningConfig, "genai_finetune.recipes.sft:train", ArtifactKind.ADAPTER,
               Serving.MODEL, "peft-prefix-tuning", 1e-2, _SUPERVISED_DEFAULTS),
        Method("full", "Supervised fine-tuning of every weight; served as a model of its own",
               SUPERVISED, FullConfig, "genai_finetune.recipes.sft:train", ArtifactKind.MODEL, Serving.MODEL,
               "safetensors", 2e-5, _SUPERVISED_DEFAULTS),
        Method("dpo", "Direct preference optimization (TRL) of a LoRA adapter on preference pairs",
               frozenset({DatasetFormat.PREFERENCE}), DpoConfig, "genai_finetune.recipes.dpo:train",
               ArtifactKind.ADAPTER, Serving.ADAPTER, "peft-lora", 5e-4,
               dataclasses.replace(_SUPERVISED_DEFAULTS, n_epochs=2, batch_size=4)),
        Method("reward_model", "A reward model (TRL RewardTrainer) on preference pairs, for the evaluation service",
               frozenset({DatasetFormat.PREFERENCE}), RewardModelConfig, "genai_finetune.recipes.reward:train",
               ArtifactKind.REWARD_MODEL, Serving.NONE, "safetensors-sequence-classification", 5e-4,
               dataclasses.replace(_SUPERVISED_DEFAULTS, n_epochs=2, batch_size=4)),
    )
}

# The model builder's methods (pretraining from scratch, continued pretraining, distillation, quantization,
# a reranker, a diffusion model): their settings live in labconfigs, their creation-time checks in planning.
_PRETRAIN_DEFAULTS = Hyperparameters(n_epochs=1, batch_size=16, learning_rate_multiplier=1.0, warmup_ratio=0.05,
                                     gradient_accumulation_steps=1, weight_decay=0.01, lr_scheduler="cosine")
_TEXT = frozenset({DatasetFormat.TEXT})
METHODS.update({
    m.name: m
    for m in (
        Method("pretrain_decoder", "A GPT/Llama-style decoder pretrained from random weights on raw text (causal LM) "
               "with a tokenizer of the tokenizer service; served for generation", _TEXT, DecoderPretrainConfig,
               "genai_finetune.recipes.pretrain:train", ArtifactKind.MODEL, Serving.MODEL, "safetensors", 3e-3,
               _PRETRAIN_DEFAULTS, fixed_base=SCRATCH),
        Method("pretrain_encoder", "A BERT-style encoder pretrained from random weights (masked LM); served by the "
               "embedding service (mean-pooled)", _TEXT, EncoderPretrainConfig, "genai_finetune.recipes.pretrain:train",
               ArtifactKind.MODEL, Serving.EMBEDDING, "safetensors-masked-lm", 1e-3, _PRETRAIN_DEFAULTS,
               fixed_base=SCRATCH),
        Method("pretrain_encoder_decoder", "A T5-style encoder-decoder pretrained from random weights (span "
               "corruption); served text-to-text", _TEXT, EncoderDecoderPretrainConfig,
               "genai_finetune.recipes.pretrain:train", ArtifactKind.MODEL, Serving.MODEL, "safetensors-seq2seq",
               3e-3, _PRETRAIN_DEFAULTS, fixed_base=SCRATCH),
        Method("reranker", "A cross-encoder reranker (sentence-transformers CrossEncoder) trained from MiniLM on "
               "(query, relevant document) pairs with mined negatives; served by the embedding service's Rerank",
               frozenset({DatasetFormat.PAIRS}), RerankerConfig, "genai_finetune.recipes.reranker:train",
               ArtifactKind.MODEL, Serving.RERANKER, "safetensors-cross-encoder", 1e-4,
               # A new head on a bi-encoder: at 2e-5 one epoch of SciFact left the loss at its prior (measured).
               dataclasses.replace(_PRETRAIN_DEFAULTS, n_epochs=2, batch_size=16, warmup_ratio=0.1,
                                   lr_scheduler="linear", weight_decay=0.0), fixed_base=MINILM),
        Method("diffusion", "A small class-conditioned diffusion model (diffusers UNet2DModel + DDPMScheduler) on "
               "images; sampled with DDIM, served by POST /v1/images/generations", frozenset({DatasetFormat.IMAGE}),
               DiffusionConfig, "genai_finetune.recipes.diffusion:train", ArtifactKind.MODEL, Serving.MODEL,
               "diffusers-unet", 1e-3, dataclasses.replace(_PRETRAIN_DEFAULTS, n_epochs=30, batch_size=64,
                                                            weight_decay=0.0), fixed_base=SCRATCH),
        Method("quantize", "The base model, a full fine-tune or a LoRA adapter merged into its base, written as GGUF "
               "(Q8_0, Q4_1) or quantized ONNX (int8, int4), with its perplexity and speed against fp32 measured on "
               "the dataset's text", _TEXT, QuantizeConfig, "genai_finetune.recipes.quantize:train",
               ArtifactKind.MODEL, Serving.MODEL, "gguf", 1.0,
               Hyperparameters(n_epochs=1, batch_size=1, learning_rate_multiplier=1.0)),
        Method("continual_pretraining", "Continued pretraining of the base model on raw text (causal LM, every "
               "weight), with perplexity on the new and the original domain before and after",
               _TEXT, ContinualPretrainConfig, "genai_finetune.recipes.continual:train", ArtifactKind.MODEL,
               Serving.MODEL, "safetensors", 5e-5,
               dataclasses.replace(_PRETRAIN_DEFAULTS, batch_size=4, weight_decay=0.0)),
        Method("distillation", "Logit distillation of the base model (teacher) into a small Llama student with the "
               "same tokenizer; reports the student's agreement with the teacher", SUPERVISED, DistillConfig,
               "genai_finetune.recipes.distill:train", ArtifactKind.MODEL, Serving.MODEL, "safetensors", 2e-3,
               dataclasses.replace(_PRETRAIN_DEFAULTS, batch_size=8)),
    )
})

# OpenAI's method.type -> ours: "supervised" is LoRA here (what fits a CPU); every registry name works too.
OPENAI_TYPES = {"supervised": "lora", "dpo": "dpo"}


def method(name: str, field_path: str = "method") -> Method:
    found = METHODS.get(OPENAI_TYPES.get(name, name) if name else "lora")
    if found is None:
        known = ", ".join(sorted({*METHODS, *OPENAI_TYPES}))
        raise InvalidArgument.for_field(field_path, f"unknown method {name!r}; use one of: {known}")
    return found


# -- dataclasses from JSON, with the field path in every error ----------------------------------------


def _finite(value: int | float) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _coerce(value: Any, kind: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _coerce(value, inner[0], path)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise InvalidArgument.for_field(path, "must be a list")
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidArgument.for_field(path, "must be true or false")
        return value
    if kind is int:
        # A JSON number may arrive as an infinite or NaN double (protobuf Struct): int() of it would raise.
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) or int(value) != value:
            raise InvalidArgument.for_field(path, "must be a whole number")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise InvalidArgument.for_field(path, "must be a finite number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InvalidArgument.for_field(path, "must be a string")
        return value
    raise TypeError(f"unsupported config field type {kind!r}")


def build_dataclass(cls: type, raw: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InvalidArgument(
            f"{path}.{unknown[0]}: unknown setting; this method takes {', '.join(sorted(names)) or 'none'}",
            [FieldViolation(f"{path}.{k}", "unknown setting") for k in unknown])
    value = cls(**{k: _coerce(v, hints[k], f"{path}.{k}") for k, v in raw.items()})
    problems = value.problems()
    if problems:
        raise InvalidArgument(f"{path}.{problems[0][0]}: {problems[0][1]}",
                              [FieldViolation(f"{path}.{k}", p) for k, p in problems])
    return value


def config_dict(value: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
