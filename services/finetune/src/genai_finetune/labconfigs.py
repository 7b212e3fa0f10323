"""Settings of the model builder's methods (pretraining from scratch, continued pretraining, distillation,
quantization, a cross-encoder reranker, a small diffusion model), each a frozen dataclass with CPU-sized
defaults and ``problems()``, as ``methods.Method`` takes them.

Fields whose comment says "set by the service" are filled in when the job is created (where the job's copy
of its tokenizer lies, which artifact a quantization reads); a value sent for them is replaced.

    >>> DecoderPretrainConfig(tokenizer="shakespeare-bpe").hidden_size
    128
"""

from __future__ import annotations

from dataclasses import dataclass


def _range(name: str, value: float, low: float, high: float) -> list[tuple[str, str]]:
    return [] if low <= value <= high else [(name, f"must be between {low:g} and {high:g}")]


def _transformer(c) -> list[tuple[str, str]]:
    out = [*_range("hidden_size", c.hidden_size, 16, 8192), *_range("num_layers", c.num_layers, 1, 128),
           *_range("num_heads", c.num_heads, 1, 128), *_range("seq_length", c.seq_length, 16, 32768),
           *_range("eval_fraction", c.eval_fraction, 0.0, 0.5)]
    if c.num_heads and c.hidden_size % c.num_heads:
        out.append(("num_heads", f"must divide hidden_size {c.hidden_size}"))
    if not c.tokenizer:
        out.append(("tokenizer", "name a tokenizer trained by the tokenizer service (POST /v1/tokenizers/train)"))
    return out


RERANKER_LOSSES = ("ranking", "binary")  # recipes.reranker.LOSSES implements each


@dataclass(frozen=True)
class DecoderPretrainConfig:
    """A GPT/Llama-style decoder (causal LM) trained from random weights on raw text."""

    tokenizer: str = ""  # a tokenizer id of the tokenizer service, trained on the same corpus
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention as in Llama; equal to num_heads for plain multi-head
    intermediate_size: int = 0  # 0: about 8/3 of hidden_size, as Llama does
    seq_length: int = 128
    eval_fraction: float = 0.05  # the share of the corpus held out for perplexity when no validation file is given
    gradient_checkpointing: bool = False
    tokenizer_path: str = ""  # set by the service: the job's copy of the tokenizer

    def problems(self) -> list[tuple[str, str]]:
        out = _transformer(self)
        if self.num_kv_heads < 1 or self.num_heads % max(1, self.num_kv_heads):
            out.append(("num_kv_heads", f"must divide num_heads {self.num_heads}"))
        return out


@dataclass(frozen=True)
class EncoderPretrainConfig:
    """A BERT-style encoder trained from random weights with masked language modelling."""

    tokenizer: str = ""  # needs a mask token: a WordPiece tokenizer of the tokenizer service has [MASK]
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 0  # 0: 4 x hidden_size, as BERT does
    seq_length: int = 128
    mlm_probability: float = 0.15
    eval_fraction: float = 0.05
    gradient_checkpointing: bool = False
    tokenizer_path: str = ""  # set by the service

    def problems(self) -> list[tuple[str, str]]:
        return _transformer(self) + _range("mlm_probability", self.mlm_probability, 0.01, 0.9)


@dataclass(frozen=True)
class EncoderDecoderPretrainConfig:
    """A T5-style encoder-decoder trained from random weights with span corruption."""

    tokenizer: str = ""
    hidden_size: int = 128
    num_layers: int = 3  # encoder layers; the decoder has as many
    num_heads: int = 4
    intermediate_size: int = 0  # 0: 2 x hidden_size
    seq_length: int = 128  # encoder input tokens per example, before corruption
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    eval_fraction: float = 0.05
    gradient_checkpointing: bool = False
    tokenizer_path: str = ""  # set by the service

    def problems(self) -> list[tuple[str, str]]:
        return (_transformer(self) + _range("noise_density", self.noise_density, 0.01, 0.5)
                + _range("mean_span_length", self.mean_span_length, 1.0, 20.0))


@dataclass(frozen=True)
class ContinualPretrainConfig:
    """Continued pretraining of the base model on raw text (causal LM, every weight), with perplexity on a
    held-out slice of the new text and on the original domain before and after, so forgetting shows."""

    seq_length: int = 256  # tokens per training block
    eval_fraction: float = 0.1
    original_domain: str = "gsm8k"  # the text the forgetting check reads (a registry of shipped corpora)
    original_tokens: int = 2048  # how many tokens of it
    gradient_checkpointing: bool = False

    def problems(self) -> list[tuple[str, str]]:
        from genai_finetune.corpora import TEXTS

        out = (_range("eval_fraction", self.eval_fraction, 0.01, 0.5) + _range("seq_length", self.seq_length, 16, 32768)
               + _range("original_tokens", self.original_tokens, 128, 1_000_000))
        if self.original_domain not in TEXTS:
            out.append(("original_domain", f"use one of {', '.join(TEXTS)}"))
        return out


@dataclass(frozen=True)
class DistillConfig:
    """Logit distillation: a small student (a Llama with the teacher's tokenizer) learns the base model's
    next-token distributions on the dataset's texts, mixed with the plain language-modelling loss."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 0
    # Forward KL on the teacher's own distribution (T 1, no hard-label term) by default: measured at 150 steps
    # (make bench-train), it beat the student trained alone (24.8 % vs 22.9 % top-1 agreement, perplexity 445 vs
    # 529) where Hinton's classification setting (alpha 0.5, T 2) lost (21.0 %, 569): a softened 49k-way
    # distribution spends the student's few steps on the tail instead of the teacher's top choices.
    temperature: float = 1.0
    alpha: float = 1.0  # weight of the distillation loss; 1 - alpha goes to the plain next-token loss
    seq_length: int = 128
    eval_fraction: float = 0.1

    def problems(self) -> list[tuple[str, str]]:
        out = (_range("hidden_size", self.hidden_size, 16, 8192) + _range("num_layers", self.num_layers, 1, 128)
               + _range("temperature", self.temperature, 0.1, 20.0) + _range("alpha", self.alpha, 0.0, 1.0)
               + _range("seq_length", self.seq_length, 16, 32768) + _range("eval_fraction", self.eval_fraction, 0.0, 0.5))
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            out.append(("num_heads", f"must divide hidden_size {self.hidden_size}"))
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            out.append(("num_kv_heads", f"must divide num_heads {self.num_heads}"))
        return out


QUANT_FORMATS = ("gguf-q8_0", "gguf-q4_1", "onnx-int8", "onnx-int4")


@dataclass(frozen=True)
class QuantizeConfig:
    """A model (the base model, or a fine-tuned artifact; a LoRA adapter is merged first) written in a
    quantized format, with its perplexity and speed measured against the fp32 weights on the dataset's text."""

    format: str = "gguf-q8_0"  # one of QUANT_FORMATS
    source: str = ""  # an artifact id or fine-tuned model name; empty quantizes the base model itself
    eval_tokens: int = 1024  # tokens of the dataset's text the perplexities are measured on
    source_path: str = ""  # set by the service: the source artifact's directory
    source_kind: str = ""  # set by the service: "adapter" or "model"

    def problems(self) -> list[tuple[str, str]]:
        out = _range("eval_tokens", self.eval_tokens, 64, 100_000)
        if self.format not in QUANT_FORMATS:
            out.append(("format", f"use one of {', '.join(QUANT_FORMATS)}"))
        return out


@dataclass(frozen=True)
class RerankerConfig:
    """A cross-encoder (sentence-transformers ``CrossEncoder``) trained from MiniLM on (query, relevant
    document) pairs, with negatives mined by the MiniLM bi-encoder among the dataset's documents."""

    negatives_per_query: int = 3
    max_length: int = 256  # query and document tokens together
    eval_fraction: float = 0.1  # queries held out to measure nDCG@10 before and after
    loss: str = "ranking"  # "ranking" (softmax over each query's candidates) or "binary" (per pair); recipes.reranker

    def problems(self) -> list[tuple[str, str]]:
        out = (_range("negatives_per_query", self.negatives_per_query, 1, 50)
               + _range("max_length", self.max_length, 32, 512) + _range("eval_fraction", self.eval_fraction, 0.0, 0.5))
        if self.loss not in RERANKER_LOSSES:
            out.append(("loss", f"must be one of {', '.join(RERANKER_LOSSES)}"))
        return out


@dataclass(frozen=True)
class DiffusionConfig:
    """A small class-conditioned diffusion model (diffusers ``UNet2DModel`` + ``DDPMScheduler``) trained on the
    dataset's images, sampled with a few-step DDIM scheduler."""

    image_size: int = 16  # images are resized to this square size (a multiple of 4)
    base_channels: int = 32
    train_timesteps: int = 1000
    sample_steps: int = 25  # DDIM steps when sampling (serving and the quality check)
    conditional: bool = True  # one class embedding per label (records carry "label")
    quality_samples: int = 200  # images generated to measure quality after training

    def problems(self) -> list[tuple[str, str]]:
        out = (_range("image_size", self.image_size, 8, 256) + _range("base_channels", self.base_channels, 8, 512)
               + _range("train_timesteps", self.train_timesteps, 10, 4000)
               + _range("sample_steps", self.sample_steps, 1, 1000) + _range("quality_samples", self.quality_samples, 0, 10_000))
        if self.image_size % 4:
            out.append(("image_size", "must be a multiple of 4"))
        return out
