"""Prompts of a task's documents: the few-shot context, the choices, the target; and the token windows that
log-likelihood scoring sends. The rules are lm-evaluation-harness's, so the same task, model and few-shot
setting give the same prompts and token ids here and in lm-eval against our gateway:

* context = description + the few-shot examples (``doc_to_text + target_delimiter + target``, each followed
  by ``fewshot_delimiter``) + ``doc_to_text`` of the document; few-shot examples are the first documents of
  the few-shot split (``first_n``) or a seeded sample (``random``), never the document itself;
* a choice or target is scored as the continuation ``target_delimiter + text``; trailing spaces of the
  context move to the continuation, the pair is encoded whole and split at the context's length;
* a rolling text is scored in windows of the model's context length, the first token conditioned on the
  prefix token (BOS, else EOS).

    >>> split_pair([10, 11], [10, 11, 12, 13])
    ([10, 11], [12, 13])
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genai_core.errors import InvalidArgument

from genai_evaluation import templates
from genai_evaluation.taskspec import TaskSpec
from genai_evaluation.types import OutputType


@dataclass(frozen=True)
class Example:
    """One document made ready for the model."""

    index: int
    doc: dict[str, Any]
    context: str
    target: str
    choices: tuple[str, ...] = ()
    gold: int = -1  # the right choice's index (multiple choice)


def _text(task: TaskSpec, doc: dict[str, Any], template: str | None) -> str:
    return templates.render(template if template is not None else task.doc_to_text, doc)


def choices(task: TaskSpec, doc: dict[str, Any]) -> tuple[str, ...]:
    if isinstance(task.doc_to_choice, tuple):
        return task.doc_to_choice
    value = templates.value(task.doc_to_choice or "", doc)
    if not isinstance(value, list | tuple) or not value:
        raise InvalidArgument.for_field("doc_to_choice", f"must give a non-empty list for every document, got {value!r}")
    return tuple(str(c) for c in value)


def target(task: TaskSpec, doc: dict[str, Any]) -> tuple[str, int]:
    """The target text and, for multiple choice, the right choice's index."""
    value = templates.value(task.doc_to_target, doc)
    if task.output_type != OutputType.MULTIPLE_CHOICE:
        return str(value), -1
    options = choices(task, doc)
    if isinstance(value, int) and 0 <= value < len(options):
        return options[value], value
    if isinstance(value, str) and value in options:
        return value, options.index(value)
    raise InvalidArgument.for_field("doc_to_target", f"{value!r} is neither a choice nor a choice's index")


def _shots(task: TaskSpec, pool: Sequence[dict[str, Any]], index: int, n: int, seed: int,
           same_split: bool) -> list[dict[str, Any]]:
    if n == 0:
        return []
    candidates = list(range(len(pool)))
    if task.fewshot_sampler == "random":
        random.Random(seed + index).shuffle(candidates)
    picked = [i for i in candidates[: n + 1] if not (same_split and i == index)]
    return [pool[i] for i in picked[:n]]


def build(task: TaskSpec, docs: Sequence[dict[str, Any]], index: int, *, few_shot: int | None = None,
          fewshot_docs: Sequence[dict[str, Any]] | None = None, prompt_template: str | None = None,
          seed: int = 1234) -> Example:
    """The example of ``docs[index]`` with its few-shot context."""
    doc = docs[index]
    if task.output_type in (OutputType.RETRIEVAL, OutputType.RAG):
        # Their prompts need what is retrieved (``contexts``): the evaluator renders them.
        return Example(index, doc, "", str(templates.value(task.doc_to_target, doc)) if task.doc_to_target else "")
    n = task.num_fewshot if few_shot is None else few_shot
    pool = fewshot_docs if fewshot_docs is not None else docs
    parts = []
    if task.description:
        parts.append(templates.render(task.description, doc))
    for shot in _shots(task, pool, index, n, seed, fewshot_docs is None):
        shot_target, _ = target(task, shot)
        parts.append(_text(task, shot, prompt_template) + task.target_delimiter + shot_target + task.fewshot_delimiter)
    context = "".join(parts) + _text(task, doc, prompt_template)
    text, gold = target(task, doc)
    options = choices(task, doc) if task.output_type == OutputType.MULTIPLE_CHOICE else ()
    return Example(index, doc, context, text, options, gold)


def rolling_text(task: TaskSpec, doc: dict[str, Any]) -> str:
    """The text a loglikelihood_rolling task scores: ``doc_to_target`` as in lm-eval."""
    return templates.render(str(task.doc_to_target), doc)


def move_spaces(context: str, continuation: str) -> tuple[str, str]:
    """Trailing whitespace of the context belongs to the continuation (it tokenizes with the next word)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def split_pair(context_ids: Sequence[int], whole_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The continuation's tokens are the whole text's tokens after the context's length."""
    return list(whole_ids[: len(context_ids)]), list(whole_ids[len(context_ids):])


def rolling_windows(ids: Sequence[int], prefix: int | None, max_len: int) -> list[tuple[list[int], int]]:
    """Disjoint scoring windows over ``ids``: (window tokens, how many leading tokens are context only).

    With a ``prefix`` token the first window starts with it, so the first token is scored too (lm-eval's
    rule); without one the first token is context only (as a bare prompt's logprobs are). Later windows
    carry up to ``max_len`` preceding tokens as context. Every scored token is scored exactly once.
    """
    out: list[tuple[list[int], int]] = []
    if not ids:
        return out
    if prefix is None:
        first = min(max_len + 1, len(ids))
        out.append((list(ids[:first]), 1))
    else:
        first = min(max_len, len(ids))
        out.append(([prefix, *ids[:first]], 1))
    done = first
    while done < len(ids):
        end = min(len(ids), done + max_len)
        start = max(0, end - max_len - 1)
        out.append((list(ids[start:end]), done - start))
        done = end
    return out
