"""T5's pretraining objective, span corruption: about ``density`` of a block's tokens, in spans of about
``mean_span`` tokens, are replaced in the input by one sentinel each; the target lists each sentinel followed by
the tokens it hid. transformers ships the model but no collator for this objective, so it lives here.

    >>> import random
    >>> inputs, labels = span_corrupt(list(range(10, 30)), density=0.15, mean_span=3.0, sentinels=[1, 2, 3],
    ...                               eos=0, rng=random.Random(0))
    >>> sorted(t for t in labels if t >= 10) == sorted(set(range(10, 30)) - set(inputs))
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` as ``parts`` positive lengths, at random."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


def span_corrupt(tokens: Sequence[int], *, density: float, mean_span: float, sentinels: Sequence[int], eos: int,
                 rng: random.Random) -> tuple[list[int], list[int]]:
    """(input ids, label ids) of one block, both ending with ``eos``."""
    length = len(tokens)
    noise = min(max(1, round(length * density)), length - 1)
    spans = max(1, min(round(noise / mean_span), noise, length - noise, len(sentinels)))
    noise_lengths = _split(noise, spans, rng)
    kept_lengths = _split(length - noise, spans, rng)
    inputs: list[int] = []
    labels: list[int] = []
    position = 0
    for i, (kept, hidden) in enumerate(zip(kept_lengths, noise_lengths, strict=True)):
        inputs.extend(tokens[position:position + kept])
        position += kept
        inputs.append(sentinels[i])
        labels.append(sentinels[i])
        labels.extend(tokens[position:position + hidden])
        position += hidden
    return inputs + [eos], labels + [eos]
