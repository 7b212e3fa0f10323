"""Runs end to end over fakes of the model and the retriever: scores are the model's, runs are stored with
their events, a stopped run resumes without redoing stored samples, cancel and failures end runs properly,
experiments and comparisons work, and the store behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest
from genai_core.errors import InvalidArgument, NotFound
from genai_core.testing import postgres_server
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.runner import RunnerSettings
from genai_evaluation.runs import Runs, RunsSettings
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.store import PostgresStore, SqliteStore
from genai_evaluation.taskspec import parse_task
from genai_evaluation.testing import FakeBackends, FakeModel, score_text
from genai_evaluation.types import (
    EventKind,
    GenerationParams,
    ModelRef,
    RetrievalTarget,
    RunSpec,
    RunState,
    SearchMode,
    Variant,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DOCS = [{"q": f"{a}+{b}?", "choices": [str(a + b - 1), str(a + b), str(a + b + 1)], "label": 1, "n": a + b}
        for a in range(1, 5) for b in range(1, 6)]

MC = {"task": "mc", "output_type": "multiple_choice", "dataset_path": "inline", "dataset_kwargs": {"docs": DOCS},
      "doc_to_text": "Q: {{q}}\nA:", "doc_to_choice": "choices", "doc_to_target": "label",
      "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
GEN = {"task": "gen", "output_type": "generate_until", "dataset_path": "inline", "dataset_kwargs": {"docs": DOCS},
       "doc_to_text": "Q: {{q}}\nA:", "doc_to_target": "{{n}}", "generation_kwargs": {"until": ["\n"]},
       "filter_list": [{"name": "number", "filter": [{"function": "regex", "regex_pattern": "(\\d+)"},
                                                      {"function": "take_first"}]}],
       "metric_list": [{"metric": "exact_match"}]}
PPL = {"task": "ppl", "output_type": "loglikelihood_rolling", "dataset_path": "inline",
       "dataset_kwargs": {"docs": DOCS[:5]}, "doc_to_target": "The sum is {{n}}."}
RET = {"task": "ret", "output_type": "retrieval", "dataset_path": "inline",
       "dataset_kwargs": {"docs": [{"query": "capital of france", "relevant": ["fr"]},
                                   {"query": "capital of italy", "relevant": ["it"]}]},
       "corpus": {"dataset_path": "inline", "dataset_kwargs": {"docs": [
           {"id": "fr", "text": "paris is the capital of france"}, {"id": "it", "text": "rome is the capital of italy"},
           {"id": "xx", "text": "bananas are yellow"}]}},
       "metric_list": [{"metric": "ndcg_at_k", "k": 3}, {"metric": "recall_at_k", "k": 1}, {"metric": "mrr"}]}
RAG = {"task": "rag", "output_type": "rag", "dataset_path": "inline",
       "dataset_kwargs": {"docs": [{"question": "what is the capital of france", "answer": "paris"}]},
       "corpus": RET["corpus"], "retrieval": {"query_field": "question", "top_k": 2},
       "doc_to_text": "{% for c in contexts %}{{c}}\n{% endfor %}Q: {{question}}\nA:", "doc_to_target": "answer"}


def _yaml(task: dict) -> str:
    import yaml

    return yaml.safe_dump(task, sort_keys=False)


EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider(resource=Resource.create({"service.name": "evaluation"}))
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


class Harness:
    def __init__(self, store, backends: FakeBackends, **runner) -> None:
        self.store = store
        self.backends = backends
        self.registry = TaskRegistry(store, store_dir := None or __import__("pathlib").Path("."), builtin={})
        del store_dir
        for task in (MC, GEN, PPL, RET, RAG):
            self.registry.register(_yaml(task), replace=True, now=0.0)
        self.runs = Runs(store, self.registry, lambda: backends, Sandbox(isolate=False),
                         RunsSettings(max_concurrent_runs=1, runner=RunnerSettings(batch_size=4, **runner)),
                         tracer_provider=PROVIDER)

    async def wait(self, run_id: str, timeout: float = 30) -> object:
        async with asyncio.timeout(timeout):
            while not (run := await self.runs.get(run_id)).state.terminal:
                await asyncio.sleep(0.02)
        return run


@contextlib.asynccontextmanager
async def harness(store=None, backends=None, **runner):
    h = Harness(store or SqliteStore(":memory:"), backends or FakeBackends(), **runner)
    h.runs.start()
    try:
        yield h
    finally:
        await h.runs.stop()


async def test_multiple_choice_scores_are_the_models_loglikelihoods():
    async with harness() as h:
        run = await h.runs.create(RunSpec(task_ids=("mc",)))
        assert run.state == RunState.QUEUED
        done = await h.wait(run.id)
        assert done.state == RunState.SUCCEEDED, done.error
        samples = h.store.samples(run.id, "mc")
        assert len(samples) == len(DOCS)
        expected_acc = 0
        for s, doc in zip(samples, DOCS, strict=True):
            context = f"Q: {doc['q']}\nA:"
            want = [score_text(context, " " + c) for c in doc["choices"]]
            assert list(s.loglikelihoods) == pytest.approx(want)
            best = max(range(3), key=lambda i: want[i])
            assert s.scores["acc"] == float(best == 1)
            expected_acc += best == 1
            assert len(s.trace_id) == 32 and int(s.trace_id, 16)
        # each example's model calls run under its own EVALUATE span, whose trace id the sample records
        spans = {s.context.trace_id: s for s in EXPORTER.get_finished_spans() if s.name == "evaluation.evaluate mc"}
        first = spans[int(samples[0].trace_id, 16)]
        assert first.attributes["evaluation.run_id"] == run.id and first.attributes["evaluation.example_index"] == 0
        acc = next(r for r in done.results if r.metric == "acc")
        assert acc.value == pytest.approx(expected_acc / len(DOCS)) and acc.sample_count == len(DOCS)
        assert acc.ci_lower <= acc.value <= acc.ci_upper and acc.stderr is not None
        # a question's choices share its context as a common token prefix
        model = h.backends.models["default"]
        context_ids = [ord(c) for c in "Q: 1+1?\nA:"]
        first = [seq for seq in model.scored if list(seq[: len(context_ids)]) == context_ids]
        assert len(first) == 3
        events = h.store.events_after(run.id, 0)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        kinds = [e.kind for e in events]
        assert kinds[0] == EventKind.STATE_CHANGE and kinds[-1] == EventKind.STATE_CHANGE
        assert EventKind.PROGRESS in kinds and EventKind.TASK_COMPLETE in kinds
        assert done.progress.done == done.progress.total == len(DOCS)


async def test_generation_rolling_retrieval_and_rag_tasks():
    backends = FakeBackends()
    backends.models["default"] = FakeModel("default", answers=lambda p: " 7 is it\nmore")
    async with harness(backends=backends) as h:
        run = await h.runs.create(RunSpec(task_ids=("gen", "ppl", "ret", "rag"), limit=5))
        done = await h.wait(run.id)
        assert done.state == RunState.SUCCEEDED, done.error
        gen = h.store.samples(run.id, "gen")
        assert [s.responses for s in gen][0] == (" 7 is it",)  # cut at the stop sequence
        assert all(s.scores["exact_match,number"] == float(s.document["n"] == 7) for s in gen)
        value = {(r.task_id, r.metric): r.value for r in done.results}
        ppl = h.store.samples(run.id, "ppl")
        ll = sum(score_text("", f"The sum is {d['n']}.") for d in DOCS[:5])
        tokens = sum(len(f"The sum is {d['n']}.") for d in DOCS[:5])
        assert value[("ppl", "token_perplexity")] == pytest.approx(math.exp(-ll / tokens))
        assert len(ppl) == 5
        assert value[("ret", "recall@1")] == 1.0 and value[("ret", "mrr")] == 1.0
        assert h.backends.retrieval.builds == 2  # each task builds its own collection from its corpus, once
        rag = h.store.samples(run.id, "rag")[0]
        assert rag.retrieved_ids[0] == "fr#0"
        assert set(rag.scores) >= {"faithfulness", "answer_relevance", "context_precision", "context_recall",
                                   "faithfulness_overlap", "answer_similarity", "answer_f1"}
        assert all(0.0 <= v <= 1.0 + 1e-9 for v in rag.scores.values())


async def test_a_stopped_run_resumes_without_redoing_stored_samples(tmp_path):
    path = tmp_path / "runs.sqlite3"
    slow = FakeBackends({"default": FakeModel("default", delay=0.05)})
    h = Harness(SqliteStore(path), slow)
    h.runs.start()
    run = await h.runs.create(RunSpec(task_ids=("mc",)))
    async with asyncio.timeout(30):
        while len(h.store.sample_indexes(run.id, "mc")) < 8:
            await asyncio.sleep(0.02)
    await h.runs.stop()  # a service shutdown: the run stays RUNNING
    first = h.store.get_run(run.id)
    assert first.state == RunState.RUNNING
    kept = h.store.sample_indexes(run.id, "mc")
    assert 8 <= len(kept) < len(DOCS)
    h.store.close()

    fresh = FakeBackends()
    async with harness(SqliteStore(path), fresh) as again:
        done = await again.wait(run.id)
        assert done.state == RunState.SUCCEEDED and done.resume_count == 1
        redone = {seq[: seq.index(ord("\n"))] for seq in fresh.models["default"].scored}
        asked = {tuple(ord(c) for c in f"Q: {DOCS[i]['q']}") for i in kept}
        assert not redone & asked, "stored samples were scored again"
        assert len(again.store.samples(run.id, "mc")) == len(DOCS)


async def test_cancel_keeps_what_was_scored_and_failures_are_reported():
    slow = FakeBackends({"default": FakeModel("default", delay=0.05)})
    async with harness(backends=slow) as h:
        run = await h.runs.create(RunSpec(task_ids=("mc",)))
        async with asyncio.timeout(30):
            while not h.store.sample_indexes(run.id, "mc"):
                await asyncio.sleep(0.02)
        cancelled = await h.runs.cancel(run.id)
        assert cancelled.state == RunState.CANCELLED
        assert 0 < len(h.store.samples(run.id, "mc")) < len(DOCS)
        assert {r.metric for r in cancelled.results} == {"acc", "acc_norm"}
        assert (await h.runs.cancel(run.id)).state == RunState.CANCELLED  # idempotent

        with pytest.raises(NotFound):
            await h.runs.create(RunSpec(task_ids=("nope",)))
        with pytest.raises(NotFound):
            await h.runs.create(RunSpec(task_ids=("mc",), model=ModelRef("missing")))
        with pytest.raises(InvalidArgument):
            await h.runs.create(RunSpec(task_ids=("mc",), limit=0))
        with pytest.raises(NotFound):
            await h.runs.create(RunSpec(task_ids=("ret",), retrieval=RetrievalTarget(collection="absent")))
        with pytest.raises(InvalidArgument):
            await h.runs.create(RunSpec(task_ids=("gen",), generation=GenerationParams(temperature=5)))


async def test_experiment_runs_variants_and_comparison_is_paired():
    async with harness() as h:
        experiment, runs = await h.runs.create_experiment(
            RunSpec(task_ids=("mc",)),
            [Variant("plain", prompt_template="Q: {{q}}\nA:"), Variant("terse", prompt_template="{{q}}=")])
        assert [r.variant for r in runs] == ["plain", "terse"] and {r.experiment_id for r in runs} == {experiment}
        for r in runs:
            assert (await h.wait(r.id)).state == RunState.SUCCEEDED
        listed, _ = await h.runs.list("", 10, experiment_id=experiment)
        assert {r.id for r in listed} == {r.id for r in runs}
        baseline, found = await h.runs.compare([r.id for r in runs], "", "", 0.95, 1000, True)
        assert baseline == runs[0].id
        acc = next(c for c in found if c.metric == "acc")
        a = {s.index: s.scores["acc"] for s in h.store.samples(runs[0].id, "mc")}
        b = {s.index: s.scores["acc"] for s in h.store.samples(runs[1].id, "mc")}
        assert acc.paired_count == len(DOCS) and acc.test == "mcnemar-exact"
        assert acc.difference == pytest.approx(sum(b.values()) / len(b) - sum(a.values()) / len(a))
        assert acc.wins == sum(b[i] > a[i] for i in a) and acc.losses == sum(b[i] < a[i] for i in a)
        assert acc.ci_lower <= acc.difference <= acc.ci_upper and 0 <= acc.p_value <= 1
        assert len(acc.differences) == len(DOCS)
        with pytest.raises(InvalidArgument):
            await h.runs.create_experiment(RunSpec(task_ids=("mc",)), [Variant("only")])


async def test_event_stream_replays_then_follows_until_the_end():
    async with harness(backends=FakeBackends({"default": FakeModel("default", delay=0.01)})) as h:
        run = await h.runs.create(RunSpec(task_ids=("mc",), limit=8))
        seen = [e async for e in h.runs.events(run.id, 0)]
        assert seen[-1].kind == EventKind.STATE_CHANGE and seen[-1].payload["state"] == "succeeded"
        assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
        tail = [e async for e in h.runs.events(run.id, seen[-3].sequence)]
        assert [e.sequence for e in tail] == [seen[-2].sequence, seen[-1].sequence]


@pytest.mark.slow
async def test_store_on_postgresql_runs_and_resumes_the_same():
    with postgres_server() as dsn:
        async with harness(PostgresStore(dsn)) as h:
            run = await h.runs.create(RunSpec(task_ids=("mc", "ret"), limit=6, labels={"who": "pg"}))
            done = await h.wait(run.id)
            assert done.state == RunState.SUCCEEDED, done.error
            assert len(h.store.samples(run.id, "mc")) == 6 and h.store.get_run(run.id).spec.labels == {"who": "pg"}
            listed, token = await h.runs.list("", 1, task_id="ret")
            assert [r.id for r in listed] == [run.id] and token == ""
        # a second service process on the same database sees everything
        store = PostgresStore(dsn)
        assert store.get_run(run.id).state == RunState.SUCCEEDED
        assert len(store.events_after(run.id, 0)) == done.last_sequence
        assert "mc" in store.tasks()
        store.close()


def test_search_mode_values_round_trip():
    spec = RunSpec(task_ids=("x",), retrieval=RetrievalTarget(mode=SearchMode.HYBRID, top_k=3),
                   judge=ModelRef(inference_model="j"))
    assert RunSpec.from_json(spec.to_json()) == spec
    assert parse_task(_yaml(MC)).id == "mc"
