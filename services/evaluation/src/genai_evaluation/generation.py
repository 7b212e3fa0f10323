"""The generate_until evaluator: generate, filter, score (exact match), and run code (pass@k).

Examples of a batch generate concurrently, so the inference service batches their decoding. Code tasks
render ``execution.program`` with the document and each response and run it in the sandbox; pass@k uses
the unbiased estimator over the example's ``n`` responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from genai_evaluation import filters, metrics, templates
from genai_evaluation.context import TaskContext, doc_json, traced
from genai_evaluation.ports import GenerateParams
from genai_evaluation.prompts import Example
from genai_evaluation.scoring import contexts
from genai_evaluation.types import Sample


def params(ctx: TaskContext) -> GenerateParams:
    task, run = ctx.task.generation, ctx.spec.generation
    stop = tuple(dict.fromkeys([*task.get("until", []), *run.stop_sequences]))
    n = run.samples_per_example or ctx.task.repeats
    temperature = run.temperature if run.temperature is not None else float(task.get("temperature", 0.0))
    return GenerateParams(
        max_new_tokens=run.max_new_tokens or int(task.get("max_gen_toks", 256)),
        temperature=temperature,
        top_p=run.top_p if run.top_p is not None else task.get("top_p"),
        stop=stop,
        n=n,
        seed=ctx.spec.seed,
    )


def _cut(text: str, stop: Sequence[str]) -> str:
    """Responses end before the first stop sequence (a remote server may not apply them all)."""
    for s in stop:
        if s and s in text:
            text = text[: text.index(s)]
    return text


async def generate_until(ctx: TaskContext, examples: Sequence[Example]) -> list[Sample]:
    settings = params(ctx)
    texts = await contexts(ctx, examples)
    exact = [m for m in ctx.task.metrics if m.name == "exact_match"]
    passes = [m for m in ctx.task.metrics if m.name == "pass_at_k"]

    async def one(example: Example, prompt: str) -> Sample:
        with traced(ctx, example) as trace_id:
            generated = await ctx.limited(ctx.model.generate(prompt, settings))
        responses = [_cut(t, settings.stop) for t in generated.texts]
        scores: dict[str, float] = {}
        filtered: dict[str, str] = {}
        for f in ctx.task.filters or ():
            out = filters.apply(f.steps, responses)
            filtered[f.name] = out[0] if out else ""
        if not ctx.task.filters:
            filtered[""] = responses[0] if responses else ""
        for m in exact:
            for name, answer in filtered.items():
                scores[metrics.score_name("exact_match", name)] = metrics.exact_match(answer, example.target, m.options)
        executions: tuple[str, ...] = ()
        if passes and ctx.task.execution is not None:
            spec = ctx.task.execution
            outcomes = await asyncio.gather(*(
                ctx.sandbox.run(templates.render(spec.program, example.doc, response=r), timeout_s=spec.timeout_s,
                                memory_mb=spec.memory_mb)
                for r in responses))
            executions = tuple(o.status for o in outcomes)
            correct = sum(o.passed for o in outcomes)
            for m in passes:
                for k in metrics.ks("pass_at_k", m.options):
                    if k <= len(responses):
                        scores[f"pass@{k}"] = metrics.pass_at_k(len(responses), correct, k)
        return Sample(ctx.task.id, example.index, doc_json(example.doc), prompt=prompt, target=example.target,
                      responses=tuple(responses), filtered={k: v for k, v in filtered.items() if k},
                      scores=scores, usage=generated.usage, trace_id=trace_id, execution_results=executions)

    return list(await asyncio.gather(*(one(e, p) for e, p in zip(examples, texts, strict=True))))
