"""How much memory a training run needs, estimated from the model's shape before the job is queued, so a
config that cannot fit fails at once with the numbers instead of after minutes of loading.

The estimate counts fp32 weights (4 bytes each), their gradients (4) and AdamW's two moments (8) for the
trainable ones, the activations kept for the backward pass (per layer about (68 + 10 * heads * seq / hidden)
bytes per token and hidden unit in fp32, after Korthikanti et al. 2022; one layer's worth plus the layer inputs
with gradient checkpointing), the logits over the vocabulary (3 copies: logits, softmax, gradient), and a
fixed runtime overhead.

    >>> e = estimate(Shape(parameters=4_000_000, trainable=4_000_000, hidden=128, layers=4, heads=4, vocab=8000),
    ...              micro_batch=8, seq_length=128)
    >>> round(e.total / 2**20)
    609
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUNTIME_OVERHEAD = 400 * 2**20  # the interpreter, torch and the libraries, measured on an idle worker


@dataclass(frozen=True)
class Shape:
    parameters: int  # every weight in memory (a frozen teacher included)
    trainable: int
    hidden: int
    layers: int
    heads: int
    vocab: int
    frozen_activations: int = 0  # bytes of forward-only activations (a teacher's logits)


@dataclass(frozen=True)
class Estimate:
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {gib(size)}" for name, size in self.parts.items())


def gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def estimate(shape: Shape, *, micro_batch: int, seq_length: int, checkpointing: bool = False) -> Estimate:
    tokens = micro_batch * seq_length
    per_layer = int(tokens * shape.hidden * (68 + 10 * shape.heads * seq_length / shape.hidden))
    kept = shape.layers * tokens * shape.hidden * 4 + per_layer if checkpointing else shape.layers * per_layer
    return Estimate({
        "weights": 4 * shape.parameters,
        "gradients": 4 * shape.trainable,
        "optimizer": 8 * shape.trainable,
        "activations": kept + shape.frozen_activations,
        "logits": 3 * 4 * tokens * shape.vocab,
        "runtime": RUNTIME_OVERHEAD,
    })
