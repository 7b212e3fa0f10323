"""What the language-model recipes of the model builder share: raw text packed into fixed blocks of token ids
(documents joined by the end-of-text token, no padding wasted), a held-out split for perplexity, and a Trainer
that logs ``eval_perplexity`` next to ``eval_loss`` so the job's events stream it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from transformers import Trainer


def token_stream(tokenizer, texts: Iterable[str], separator: int | None) -> list[int]:
    """Every text's ids, one after the other, with ``separator`` (end of text) between documents."""
    ids: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        for row in tokenizer(batch, add_special_tokens=False).input_ids:
            ids.extend(row)
            if separator is not None:
                ids.append(separator)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    return ids


def pack(ids: list[int], size: int) -> list[list[int]]:
    """Consecutive blocks of ``size`` ids; the incomplete tail is dropped."""
    return [ids[i:i + size] for i in range(0, len(ids) - size + 1, size)]


def split(blocks: list[list[int]], fraction: float, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """(train, held out): a seeded random ``fraction`` of the blocks is held out (at least one when asked)."""
    if fraction <= 0 or len(blocks) < 2:
        return blocks, []
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, round(len(blocks) * fraction))])
    return [b for i, b in enumerate(blocks) if i not in held], [b for i, b in enumerate(blocks) if i in held]


def perplexity(loss: float | None) -> float | None:
    return math.exp(min(loss, 50.0)) if loss is not None else None


class PerplexityTrainer(Trainer):
    """A ``Trainer`` whose evaluation logs also carry ``eval_perplexity`` (exp of the mean token loss)."""

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "eval_loss" in logs:
            logs = {**logs, "eval_perplexity": perplexity(logs["eval_loss"])}
        super().log(logs, *args, **kwargs)
