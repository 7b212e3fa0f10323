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


def record_ids(tokenizer, fmt, records: list[dict]) -> list[int]:
    """The records as one token stream: texts joined by end-of-text, other formats as the SFT encoding renders
    them (a conversation through the chat template)."""
    from genai_finetune.tokenization import encode
    from genai_finetune.types import DatasetFormat

    if fmt is DatasetFormat.TEXT:
        return token_stream(tokenizer, [r["text"] for r in records], tokenizer.eos_token_id)
    return [t for r in records for t in encode(tokenizer, fmt, r).input_ids]


def job_blocks(context, tokenizer, size: int, fraction: float) -> tuple[list[list[int]], list[list[int]]]:
    """(training blocks, held-out blocks) of a job: the validation file when it has one, else a held-out share."""
    blocks = pack(record_ids(tokenizer, context.format, context.train_records), size)
    if context.eval_records:
        return blocks, pack(record_ids(tokenizer, context.format, context.eval_records), size)
    return split(blocks, fraction, context.spec.seed)


def base_tokenizer(directory: str):
    """The base model's tokenizer, padding with end-of-text when it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def perplexity(loss: float | None) -> float | None:
    return math.exp(min(loss, 50.0)) if loss is not None else None


class PerplexityTrainer(Trainer):
    """A ``Trainer`` whose evaluation logs also carry ``eval_perplexity`` (exp of the mean token loss)."""

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "eval_loss" in logs:
            logs = {**logs, "eval_perplexity": perplexity(logs["eval_loss"])}
        super().log(logs, *args, **kwargs)
