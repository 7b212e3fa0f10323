"""Log-likelihood evaluators: multiple choice, loglikelihood and loglikelihood_rolling (perplexity).

A batch's texts are tokenized in one call. A question's choices are scored as separate sequences that
share the question's tokens as a common prefix and are sent together, so an inference service with prefix
caching computes the shared context once per question, not once per choice. Scores come from the prompt
log-probabilities alone (nothing is generated).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from genai_evaluation import prompts
from genai_evaluation.context import TaskContext, doc_json, traced
from genai_evaluation.ports import Scored
from genai_evaluation.prompts import Example
from genai_evaluation.types import OutputType, Sample, Usage


async def contexts(ctx: TaskContext, examples: Sequence[Example]) -> list[str]:
    """Each example's context, wrapped in the chat template when the run asks for it."""
    if not ctx.spec.apply_chat_template:
        return [e.context for e in examples]
    return list(await asyncio.gather(*(ctx.model.chat_prompt(e.context) for e in examples)))


async def _pairs(ctx: TaskContext, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) per (context, continuation), encoded as lm-eval encodes them."""
    info = await ctx.model.info()
    moved = [prompts.move_spaces(c, cont) for c, cont in pairs]
    texts: list[str] = []
    for context, continuation in moved:
        texts += [context, context + continuation] if context else [continuation]
    ids = await ctx.model.tokenize(texts)
    out, i = [], 0
    for context, _ in moved:
        if context:
            context_ids, continuation_ids = ids[i], prompts.split_pair(ids[i], ids[i + 1])[1]
            i += 2
        else:
            context_ids, continuation_ids = [info.prefix_token_id], ids[i]
            i += 1
        out.append((context_ids, continuation_ids))
    return out


async def _score(ctx: TaskContext, context_ids: list[int], continuation_ids: list[int],
                 greedy: bool = False) -> Scored:
    info = await ctx.model.info()
    sequence = (context_ids + continuation_ids)[-info.max_length:]
    start = max(1, len(sequence) - len(continuation_ids))
    return await ctx.limited(ctx.model.score(sequence, start, greedy))


def _usage(results: Sequence[Scored]) -> Usage:
    total = Usage()
    for r in results:
        total = total + r.usage
    return total


async def multiple_choice(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    texts = await contexts(ctx, examples)
    pairs = [(text, ctx.task.target_delimiter + choice) for text, e in zip(texts, examples, strict=True)
             for choice in e.choices]
    encoded = await _pairs(ctx, pairs)

    async def one(example: Example, text: str, offset: int) -> Sample:
        with traced(ctx, example) as trace_id:
            mine = encoded[offset: offset + len(example.choices)]
            results = await asyncio.gather(*(_score(ctx, c, k) for c, k in mine))
        lls = [sum(r.logprobs) for r in results]
        best = max(range(len(lls)), key=lambda i: lls[i])
        # acc_norm divides by the choice's length in characters, as lm-eval does.
        normed = [ll / max(1, len(c)) for ll, c in zip(lls, example.choices, strict=True)]
        best_norm = max(range(len(normed)), key=lambda i: normed[i])
        scores = {"acc": float(best == example.gold), "acc_norm": float(best_norm == example.gold)}
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt=text, target=example.target,
                      choices=example.choices, loglikelihoods=tuple(lls),
                      scores={k: v for k, v in scores.items() if k in ctx.score_names},
                      usage=_usage(results), trace_id=trace_id)

    offsets, at = [], 0
    for e in examples:
        offsets.append(at)
        at += len(e.choices)
    return list(await asyncio.gather(*(one(e, t, o) for e, t, o in zip(examples, texts, offsets, strict=True))))


async def loglikelihood(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    texts = await contexts(ctx, examples)
    encoded = await _pairs(ctx, [(t, ctx.task.target_delimiter + e.target) for t, e in zip(texts, examples,
                                                                                             strict=True)])

    async def one(example: Example, text: str, pair: tuple[list[int], list[int]]) -> Sample:
        with traced(ctx, example) as trace_id:
            result = await _score(ctx, *pair, greedy="acc" in ctx.score_names)
        ll = sum(result.logprobs)
        scores = {"acc": float(result.greedy)}
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt=text, target=example.target,
                      loglikelihoods=(ll,), scores={k: v for k, v in scores.items() if k in ctx.score_names},
                      usage=result.usage, trace_id=trace_id, extra={"loglikelihood": ll, "tokens": len(pair[1])})

    return list(await asyncio.gather(*(one(e, t, p) for e, t, p in zip(examples, texts, encoded, strict=True))))


async def rolling(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    info = await ctx.model.info()
    texts = [prompts.rolling_text(ctx.task, e.doc) for e in examples]
    ids = await ctx.model.tokenize(texts)

    async def one(example: Example, text: str, tokens: list[int]) -> Sample:
        tokens = tokens[: ctx.task.rolling_max_tokens] if ctx.task.rolling_max_tokens else tokens
        prefix = info.prefix_token_id if ctx.task.rolling_prefix else None
        windows = prompts.rolling_windows(tokens, prefix, info.max_length - 1)
        with traced(ctx, example) as trace_id:
            results = await asyncio.gather(*(ctx.limited(ctx.model.score(w, start)) for w, start in windows))
        ll = sum(sum(r.logprobs) for r in results)
        scored = sum(len(r.logprobs) for r in results)
        extra = {"loglikelihood": ll, "tokens": float(scored), "words": float(len(re.split(r"\s+", text))),
                 "bytes": float(len(text.encode()))}
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt="", target=text,
                      loglikelihoods=(ll,),
                      usage=_usage(results), trace_id=trace_id, extra=extra)

    return list(await asyncio.gather(*(one(e, t, i) for e, t, i in zip(examples, texts, ids, strict=True))))


EVALUATORS = {
    OutputType.MULTIPLE_CHOICE: multiple_choice,
    OutputType.LOGLIKELIHOOD: loglikelihood,
    OutputType.LOGLIKELIHOOD_ROLLING: rolling,
}
