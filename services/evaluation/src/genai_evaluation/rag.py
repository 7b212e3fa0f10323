"""The RAG evaluator: retrieve, answer from the contexts, and score the answer and the contexts.

LLM-judged metrics ask the judge one yes/no question each and read its probability of "Yes" against "No"
from the log-likelihoods of the two answers (no text to parse, so a small judge never produces an
unparsable verdict; the README reports how often a 135M judge agrees with hand labels):

* faithfulness: is every claim of the answer supported by the contexts?
* answer_relevance: does the answer address the question?
* context_precision: for each retrieved context, is it useful for the question? averaged by rank (Ragas'
  definition: mean of precision@k over the ranks k of useful contexts);
* context_recall: can the reference answer be inferred from the contexts?

The non-LLM variants need no judge: word overlap of the answer (faithfulness_overlap) and of the
reference (context_recall_overlap) with the contexts, embedding cosine of answer and reference
(answer_similarity), and SQuAD-style token F1 (answer_f1).
"""

from __future__ import annotations

import asyncio
import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from genai_evaluation import metrics, templates
from genai_evaluation.context import TaskContext, doc_json, traced
from genai_evaluation.generation import params
from genai_evaluation.ports import LanguageModel
from genai_evaluation.prompts import Example
from genai_evaluation.retrieval_eval import mode, top_k
from genai_evaluation.types import Sample, Usage

STOPWORDS = frozenset(
    "a an and are as at be been but by can did do does for from had has have he her his how i if in into is it its "
    "of on or our she so than that the their them then there these they this those to was we were what when where "
    "which who why will with you your".split())

FAITHFULNESS = ("Context:\n{contexts}\n\nAnswer: {answer}\n\n"
                "Is every claim in the answer supported by the context? Reply Yes or No.")
RELEVANCE = "Question: {question}\nAnswer: {answer}\n\nDoes the answer address the question? Reply Yes or No."
PRECISION = ("Question: {question}\nContext: {context}\n\n"
             "Does the context contain information that helps answer the question? Reply Yes or No.")
RECALL = ("Context:\n{contexts}\n\nStatement: {statement}\n\n"
          "Can the statement be inferred from the context? Reply Yes or No.")


async def p_yes(judge: LanguageModel, text: str) -> float:
    """The judge's probability of answering "Yes" rather than "No" to ``text`` (a chat turn)."""
    prompt = await judge.chat_prompt(text)
    ids = await judge.tokenize([prompt, prompt + "Yes", prompt + "No"])
    context = ids[0]
    yes, no = (await asyncio.gather(judge.score(ids[1], len(context)), judge.score(ids[2], len(context))))
    ly, ln = sum(yes.logprobs), sum(no.logprobs)
    top = max(ly, ln)
    return math.exp(ly - top) / (math.exp(ly - top) + math.exp(ln - top))


def _numbered(contexts: Sequence[str]) -> str:
    return "\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1))


async def faithfulness(judge: LanguageModel, contexts: Sequence[str], answer: str) -> float:
    return await p_yes(judge, FAITHFULNESS.format(contexts=_numbered(contexts), answer=answer))


async def answer_relevance(judge: LanguageModel, question: str, answer: str) -> float:
    return await p_yes(judge, RELEVANCE.format(question=question, answer=answer))


async def context_precision(judge: LanguageModel, question: str, contexts: Sequence[str]) -> float:
    verdicts = [v >= 0.5 for v in await asyncio.gather(*(p_yes(judge, PRECISION.format(question=question, context=c))
                                                        for c in contexts))]
    useful = sum(verdicts)
    if not useful:
        return 0.0
    hits, total = 0, 0.0
    for rank, verdict in enumerate(verdicts, 1):
        if verdict:
            hits += 1
            total += hits / rank
    return total / useful


async def context_recall(judge: LanguageModel, contexts: Sequence[str], reference: str) -> float:
    return await p_yes(judge, RECALL.format(contexts=_numbered(contexts), statement=reference))


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1]


def overlap(text: str, contexts: Sequence[str]) -> float:
    words = content_words(text)
    if not words:
        return 0.0
    pool = set(content_words(" ".join(contexts)))
    return sum(w in pool for w in words) / len(words)


def _normalize(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return [w for w in text.split() if w not in {"a", "an", "the"}]


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _normalize(prediction), _normalize(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


async def evaluate(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    assert ctx.retriever is not None
    names = set(ctx.score_names)
    settings = params(ctx)

    async def one(example: Example) -> Sample:
        question = templates.render(ctx.task.retrieval.query_field, example.doc)
        reference = example.target
        with traced(ctx, example) as trace_id:
            hits, retrieval_usage = await ctx.limited(ctx.retriever.search(
                ctx.tenant, ctx.collection, question, mode(ctx), top_k(ctx), ctx.spec.retrieval.rerank))
            contexts = [h.text for h in hits]
            prompt = templates.render(ctx.spec.prompt_template or ctx.task.doc_to_text, example.doc, contexts=contexts)
            if ctx.spec.apply_chat_template:
                prompt = await ctx.model.chat_prompt(prompt)
            generated = await ctx.limited(ctx.model.generate(prompt, settings))
            answer = generated.texts[0].strip() if generated.texts else ""
            judged: dict[str, float] = {}
            jobs = {
                "faithfulness": lambda: faithfulness(ctx.judge, contexts, answer),
                "answer_relevance": lambda: answer_relevance(ctx.judge, question, answer),
                "context_precision": lambda: context_precision(ctx.judge, question, contexts),
                "context_recall": lambda: context_recall(ctx.judge, contexts, reference),
            }
            wanted = [n for n in jobs if n in names and (contexts or n == "answer_relevance")]
            values = await asyncio.gather(*(ctx.limited(jobs[n]()) for n in wanted))
            judged.update(zip(wanted, values, strict=True))
            if "answer_similarity" in names and ctx.embeddings is not None:
                vectors = await ctx.embeddings.embed([answer or " ", reference or " "])
                judged["answer_similarity"] = cosine(vectors[0], vectors[1])
        for name in ("faithfulness", "context_precision", "context_recall"):
            if name in names and not contexts:
                judged[name] = 0.0
        simple = {
            "faithfulness_overlap": overlap(answer, contexts),
            "context_recall_overlap": overlap(reference, contexts),
            "answer_f1": token_f1(answer, reference),
        }
        for metric in ctx.task.metrics:
            if metric.name == "exact_match":
                simple["exact_match"] = metrics.exact_match(answer, reference, metric.options)
        scores = {**{k: v for k, v in simple.items() if k in names}, **judged}
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt=prompt, target=reference,
                      responses=(answer,), retrieved_ids=tuple(h.id for h in hits), scores=scores,
                      usage=generated.usage + retrieval_usage + Usage(), trace_id=trace_id)

    return list(await asyncio.gather(*(one(e) for e in examples)))
