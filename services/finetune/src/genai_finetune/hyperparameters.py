"""OpenAI-style hyperparameters: each field "auto" (None) or a value; ``resolve`` checks the values and fills
"auto" from the method's defaults and the dataset, so a job always reports what it trained with.

    >>> from genai_finetune.methods import METHODS
    >>> h = resolve(Hyperparameters(n_epochs=2), METHODS["lora"], examples=10, context_length=8192)
    >>> (h.n_epochs, h.batch_size, h.learning_rate, h.max_seq_length)
    (2, 4, 0.001, 1024)
"""

from __future__ import annotations

import math
from dataclasses import replace

from genai_core.errors import FieldViolation, InvalidArgument
from genai_core.limits import FINETUNE as LIMITS

from genai_finetune.methods import Method
from genai_finetune.types import Hyperparameters

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
AUTO_MAX_SEQ_LENGTH = 1024  # CPU-sized: longer records are truncated unless asked otherwise


def _checks(h: Hyperparameters, context_length: int) -> list[tuple[str, bool, str]]:
    def within(value, low, high) -> bool:
        return value is None or low <= value <= high

    def between(low, high) -> str:
        return f"must be between {low} and {high}"

    L = LIMITS  # noqa: N806 - the limits, written once in genai_core.limits
    steps = between(1, L.max_steps)
    context = min(context_length, L.max_seq_length)
    return [
        ("n_epochs", within(h.n_epochs, 1, L.max_epochs), between(1, L.max_epochs)),
        ("batch_size", within(h.batch_size, 1, L.max_batch_size), between(1, L.max_batch_size)),
        ("learning_rate_multiplier",
         h.learning_rate_multiplier is None or 0 < h.learning_rate_multiplier <= L.max_learning_rate_multiplier,
         f"must be in (0, {L.max_learning_rate_multiplier:g}]"),
        ("max_steps", within(h.max_steps, 1, L.max_steps), steps),
        ("max_seq_length", within(h.max_seq_length, L.min_seq_length, context),
         f"must be between {L.min_seq_length} and the model's context of {context} tokens"),
        ("warmup_ratio", within(h.warmup_ratio, 0.0, L.max_warmup_ratio), between(0, f"{L.max_warmup_ratio:g}")),
        ("checkpoint_steps", within(h.checkpoint_steps, 1, L.max_steps), steps),
        ("eval_steps", within(h.eval_steps, 1, L.max_steps), steps),
        ("gradient_accumulation_steps", within(h.gradient_accumulation_steps, 1, L.max_gradient_accumulation_steps),
         between(1, L.max_gradient_accumulation_steps)),
        ("weight_decay", within(h.weight_decay, 0.0, L.max_weight_decay), between(0, f"{L.max_weight_decay:g}")),
        ("lr_scheduler", h.lr_scheduler in (None, "", *SCHEDULERS), f"use one of {', '.join(SCHEDULERS)}"),
    ]


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(examples / batch_size))


def resolve(requested: Hyperparameters, method: Method, *, examples: int, context_length: int,
            path: str = "hyperparameters") -> Hyperparameters:
    bad = [(name, problem) for name, ok, problem in _checks(requested, context_length) if not ok]
    if requested.learning_rate is not None:
        bad.append(("learning_rate", "is output only; set learning_rate_multiplier"))
    if bad:
        raise InvalidArgument(f"{path}.{bad[0][0]}: {bad[0][1]}", [FieldViolation(f"{path}.{n}", p) for n, p in bad])
    d = method.defaults

    def pick(name: str):
        value = getattr(requested, name)
        return value if value not in (None, "") else getattr(d, name)

    batch = requested.batch_size or min(d.batch_size or 4, max(1, examples))
    accumulation = pick("gradient_accumulation_steps") or 1
    if batch % accumulation:
        raise InvalidArgument.for_field(f"{path}.gradient_accumulation_steps",
                                        f"must divide batch_size {batch} (the micro-batch is batch_size / this)")
    epochs = pick("n_epochs") or 1
    total = steps_per_epoch(examples, batch) * epochs
    if requested.max_steps:
        total = min(total, requested.max_steps)
    checkpoint = requested.checkpoint_steps or max(1, min(25, math.ceil(total / 4)))
    return replace(
        requested,
        n_epochs=epochs,
        batch_size=batch,
        learning_rate_multiplier=pick("learning_rate_multiplier") or 1.0,
        learning_rate=method.base_learning_rate * (pick("learning_rate_multiplier") or 1.0),
        max_seq_length=requested.max_seq_length or min(context_length, AUTO_MAX_SEQ_LENGTH),
        warmup_ratio=pick("warmup_ratio") or 0.0,
        checkpoint_steps=checkpoint,
        eval_steps=requested.eval_steps or checkpoint,
        gradient_accumulation_steps=accumulation,
        weight_decay=pick("weight_decay") or 0.0,
        lr_scheduler=pick("lr_scheduler") or "linear",
    )


def total_steps(h: Hyperparameters, examples: int) -> int:
    """The optimizer steps a resolved job takes."""
    total = steps_per_epoch(examples, h.batch_size or 1) * (h.n_epochs or 1)
    return min(total, h.max_steps) if h.max_steps else total
