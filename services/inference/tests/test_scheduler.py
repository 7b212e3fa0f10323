"""The continuous-batching Scheduler, driven through the Inference domain: determinism, stop sequences,
lengths, n, logprobs, concurrent requests joining mid-flight, cancellation, disconnects, a full queue,
deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest
from genai_core.errors import ResourceExhausted
from genai_inference.generation import Inference
from genai_inference.scheduler import Scheduler
from genai_inference.types import DoneEvent, FinishEvent, FinishReason, Sampling, TokenEvent

FRANCE = "What is the capital of France?"
STORY = "Write a long story about a dragon who learns to fly."


async def events_of(inference, request) -> list:
    return [event async for event in inference.stream(request)]


# -- determinism, stops, lengths, n ------------------------------------------------------------------------


async def test_greedy_is_identical_across_runs(inference, make_request):
    first = await inference.collect(make_request(FRANCE, max_new_tokens=12))
    second = await inference.collect(make_request(FRANCE, max_new_tokens=12))
    assert first.completions[0].token_ids == second.completions[0].token_ids
    assert first.completions[0].text == second.completions[0].text
    assert "Paris" in first.completions[0].text


async def test_same_seed_same_output_at_temperature(inference, make_request):
    def request(seed):
        return make_request(STORY, temperature=0.8, seed=seed, max_new_tokens=8, ignore_eos=True)

    a = await inference.collect(request(7))
    b = await inference.collect(request(7))
    assert a.completions[0].token_ids == b.completions[0].token_ids
    assert len(a.completions[0].token_ids) == 8
    others = [(await inference.collect(request(seed))).completions[0].token_ids for seed in (8, 9)]
    assert any(o != a.completions[0].token_ids for o in others)  # the seed matters


async def test_stop_sequence_excludes_the_stop_and_finishes(inference, make_request):
    free = await inference.collect(make_request(FRANCE, max_new_tokens=12))
    assert "Paris" in free.completions[0].text
    result = await inference.collect(make_request(FRANCE, max_new_tokens=12, stop=("Paris",)))
    completion = result.completions[0]
    assert "Paris" not in completion.text
    assert free.completions[0].text.startswith(completion.text)
    assert completion.text == free.completions[0].text[: free.completions[0].text.index("Paris")]
    assert completion.finish.reason is FinishReason.STOP_SEQUENCE
    assert completion.finish.stop_sequence == "Paris"


async def test_stop_token_id(inference, make_request, tokenizer):
    free = await inference.collect(make_request(FRANCE, max_new_tokens=12))
    ids = free.completions[0].token_ids
    stop_id = ids[3]
    result = await inference.collect(make_request(FRANCE, max_new_tokens=12, stop_token_ids=(stop_id,)))
    completion = result.completions[0]
    assert completion.finish.reason is FinishReason.STOP_SEQUENCE
    assert completion.finish.stop_token_id == stop_id
    assert completion.token_ids == ids[:3]


async def test_max_new_tokens_gives_length_with_exactly_that_many_tokens(inference, make_request):
    result = await inference.collect(make_request(STORY, max_new_tokens=5))
    completion = result.completions[0]
    assert completion.finish.reason is FinishReason.LENGTH
    assert len(completion.token_ids) == 5
    assert result.done.usage.completion_tokens == 5
    assert result.done.usage.prompt_tokens == len(make_request(STORY).prompt_ids)


async def test_eos_gives_stop(inference, make_request):
    result = await inference.collect(make_request(FRANCE, max_new_tokens=24))
    completion = result.completions[0]
    assert completion.finish.reason is FinishReason.STOP
    assert len(completion.token_ids) < 24
    assert completion.text.strip().startswith("The capital of France is Paris")


async def test_n_two_gives_two_completions(inference, make_request):
    result = await inference.collect(
        make_request(STORY, n=2, temperature=0.9, seed=3, max_new_tokens=8, ignore_eos=True)
    )
    assert [c.index for c in result.completions] == [0, 1]
    for completion in result.completions:
        assert len(completion.token_ids) == 8
        assert completion.finish.reason is FinishReason.LENGTH
        assert completion.text
    assert result.done.usage.completion_tokens == 16
    assert result.completions[0].token_ids != result.completions[1].token_ids  # seed + index each


async def test_n_greedy_completions_are_identical(inference, make_request):
    result = await inference.collect(make_request(FRANCE, n=3, max_new_tokens=8))
    assert len(result.completions) == 3
    assert len({tuple(c.token_ids) for c in result.completions}) == 1


# -- logprobs -------------------------------------------------------------------------------------------


async def test_logprobs_and_top_logprobs(inference, make_request):
    result = await inference.collect(make_request(FRANCE, max_new_tokens=6, logprobs=True, top_logprobs=3))
    completion = result.completions[0]
    assert len(completion.logprobs) == len(completion.token_ids) > 0
    for token_id, lp in zip(completion.token_ids, completion.logprobs, strict=True):
        assert lp.token_id == token_id
        assert lp.logprob <= 0.0
        assert len(lp.top) == 3
        values = [t.logprob for t in lp.top]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0.0 for v in values)
        assert lp.top[0].token_id == token_id  # greedy picks the most likely token
        assert lp.top[0].logprob == pytest.approx(lp.logprob)
        assert lp.text == lp.top[0].text


async def test_sampled_logprobs_without_top(inference, make_request):
    result = await inference.collect(
        make_request(STORY, temperature=1.0, seed=1, max_new_tokens=6, ignore_eos=True, logprobs=True)
    )
    completion = result.completions[0]
    assert len(completion.logprobs) == 6
    assert all(lp.logprob <= 0.0 and lp.top == () for lp in completion.logprobs)


async def test_prompt_logprobs(inference, make_request):
    request = make_request("The capital of France is", chat=False, max_new_tokens=2, prompt_logprobs=2, echo=True)
    result = await inference.collect(request)
    prompt = result.done.prompt_logprobs
    assert [p.token_id for p in prompt] == list(request.prompt_ids)
    assert prompt[0].logprob == 0.0 and prompt[0].top == ()  # the first token has no prediction
    for p in prompt[1:]:
        assert p.logprob <= 0.0
        assert len(p.top) == 2
        assert p.top[0].logprob >= p.top[1].logprob
        assert p.logprob <= p.top[0].logprob + 1e-5
    assert result.completions[0].logprobs == []  # generated logprobs were not asked for


# -- continuous batching ---------------------------------------------------------------------------------


async def test_concurrent_requests_batch_and_a_late_request_joins_mid_flight(idle, inference, make_request):
    log: list[tuple[str, str]] = []  # (name, kind) in the order the events arrived
    lengths = {"a": 4, "b": 8, "c": 12, "d": 20}
    results: dict[str, list] = {}

    async def run(name: str, max_new: int, prompt: str = STORY):
        request = make_request(prompt, max_new_tokens=max_new, ignore_eos=True)
        events = []
        async for event in inference.stream(request):
            events.append(event)
            log.append((name, type(event).__name__))
        results[name] = events

    tasks = [asyncio.create_task(run(name, n)) for name, n in lengths.items()]
    # The late request arrives once the longest one has produced a few tokens.
    assert await _wait(lambda: sum(1 for e in log if e == ("d", "TokenEvent")) >= 6)
    tasks.append(asyncio.create_task(run("late", 2, FRANCE)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    for name, n in lengths.items():
        tokens = [e for e in results[name] if isinstance(e, TokenEvent)]
        finish = [e for e in results[name] if isinstance(e, FinishEvent)]
        assert sum(len(t.token_ids) for t in tokens) == n
        assert [f.reason for f in finish] == [FinishReason.LENGTH]
        assert isinstance(results[name][-1], DoneEvent)
        assert results[name][-1].usage.completion_tokens == n

    def first(name, kind):
        return log.index((name, kind))

    # Batched: every one of the four produced a token before any of them finished.
    assert max(first(n, "TokenEvent") for n in lengths) < min(first(n, "DoneEvent") for n in lengths)
    assert first("a", "DoneEvent") < first("b", "DoneEvent") < first("c", "DoneEvent") < first("d", "DoneEvent")
    # The late request joined the running batch: served while d was still generating, before d finished.
    assert first("late", "DoneEvent") < first("d", "DoneEvent")
    d_tokens = [i for i, e in enumerate(log) if e == ("d", "TokenEvent")]
    assert d_tokens[0] < first("late", "TokenEvent") < d_tokens[-1]
    assert sum(1 for e in results["late"] if isinstance(e, TokenEvent)) == 2
    # The worker retires rows just after emitting their events.
    assert await _wait(lambda: not idle._running and idle._batch.size == 0)


# -- cancellation and disconnects -----------------------------------------------------------------------


async def test_cancel_by_request_id_ends_with_cancelled_quickly(idle, inference, make_request):
    request = make_request(STORY, request_id="cancel-me-1", max_new_tokens=200, ignore_eos=True)
    tokens_before = tokens_after = 0
    finish = done = None
    cancelled = False
    async for event in inference.stream(request):
        if isinstance(event, TokenEvent):
            if cancelled:
                tokens_after += 1
            else:
                tokens_before += 1
                if tokens_before == 3:
                    assert inference.cancel("cancel-me-1") is True
                    cancelled = True
        elif isinstance(event, FinishEvent):
            finish = event
        elif isinstance(event, DoneEvent):
            done = event
    assert finish is not None and finish.reason is FinishReason.CANCELLED
    assert tokens_after <= 2
    assert done is not None and done.usage.completion_tokens <= 5
    assert inference.cancel("cancel-me-1") is False  # already gone
    assert await _wait(lambda: not idle._running)


async def test_cancel_unknown_request_is_false(inference):
    assert inference.cancel("no-such-request") is False


async def test_closing_the_stream_frees_the_slot(idle, inference, make_request):
    request = make_request(STORY, request_id="disconnect-1", max_new_tokens=200, ignore_eos=True)
    stream = inference.stream(request)
    seen = 0
    async for event in stream:
        if isinstance(event, TokenEvent):
            seen += 1
            if seen == 2:
                break
    assert len(idle._running) == 1
    await stream.aclose()  # the client went away
    assert await _wait(lambda: not idle._running and idle._batch.size == 0, timeout=5)
    assert idle.cancel("disconnect-1") is False  # forgotten once the stream closed
    # And the scheduler keeps serving.
    result = await inference.collect(make_request(FRANCE, max_new_tokens=4))
    assert len(result.completions[0].token_ids) == 4


async def test_cancelling_the_consumer_task_frees_the_slot(idle, inference, make_request):
    request = make_request(STORY, max_new_tokens=200, ignore_eos=True)
    started = asyncio.Event()

    async def consume():
        async for event in inference.stream(request):
            if isinstance(event, TokenEvent):
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait(lambda: not idle._running, timeout=5)


# -- a full queue ---------------------------------------------------------------------------------------


async def test_full_queue_rejects_with_resource_exhausted_and_keeps_working(
    idle, engine, tokenizer, compiler, settings, make_request
):
    small = Scheduler(engine, tokenizer, max_batch_size=1, max_queue=1, compiler=compiler)
    await small.start()
    assert _sample(small.metrics.batch_size, "_count") <= 2  # the warm-up is short
    domain = Inference(small, tokenizer, settings)
    try:
        first = domain.stream(make_request(STORY, request_id="q1", max_new_tokens=30, ignore_eos=True))
        assert isinstance(await first.__anext__(), TokenEvent)  # running: the one slot is taken

        second_events: list = []

        async def second():
            async for event in domain.stream(make_request(FRANCE, request_id="q2", max_new_tokens=3)):
                second_events.append(event)

        waiting = asyncio.create_task(second())
        assert await _wait(lambda: small.queue_depth == 1)

        with pytest.raises(ResourceExhausted) as info:
            async for _ in domain.stream(make_request(FRANCE, request_id="q3", max_new_tokens=3)):
                pass
        assert info.value.reason == "QUEUE_FULL"
        assert _sample(small.metrics.rejected, "_total") == 1

        domain.cancel("q1")
        rest = [event async for event in first]
        assert any(isinstance(e, FinishEvent) and e.reason is FinishReason.CANCELLED for e in rest)
        await asyncio.wait_for(waiting, 60)
        assert sum(len(e.token_ids) for e in second_events if isinstance(e, TokenEvent)) == 3
        assert isinstance(second_events[-1], DoneEvent)

        after = await domain.collect(make_request(FRANCE, max_new_tokens=3))  # the service keeps working
        assert len(after.completions[0].token_ids) == 3
    finally:
        await small.close()


# -- deadlines ------------------------------------------------------------------------------------------


async def test_deadline_in_the_past_finishes_promptly(idle, inference, make_request):
    started = time.monotonic()
    result = await inference.collect(
        make_request(STORY, max_new_tokens=200, ignore_eos=True, deadline=time.monotonic() - 1)
    )
    assert time.monotonic() - started < 10
    completion = result.completions[0]
    assert completion.finish is not None
    assert completion.finish.reason is FinishReason.LENGTH
    assert completion.token_ids == []
    assert result.done.usage.completion_tokens == 0


async def test_deadline_cuts_a_running_request(idle, inference, make_request):
    started = time.monotonic()
    await inference.collect(make_request(STORY, max_new_tokens=4, ignore_eos=True))
    four_tokens = time.monotonic() - started  # scale the deadline to this machine's speed right now
    result = await inference.collect(
        make_request(STORY, max_new_tokens=200, ignore_eos=True, deadline=time.monotonic() + max(1.0, 3 * four_tokens))
    )
    completion = result.completions[0]
    assert completion.finish.reason is FinishReason.LENGTH
    assert 0 < len(completion.token_ids) < 200


# -- failures -------------------------------------------------------------------------------------------


def _fail_decode_once(monkeypatch, engine, after_calls: int) -> None:
    """Make the engine's decode raise once, on call number ``after_calls + 1``."""
    real = engine.decode
    calls = {"n": 0}

    def decode(batch, tokens, adapters):
        calls["n"] += 1
        if calls["n"] == after_calls + 1:
            raise RuntimeError("simulated engine failure")
        return real(batch, tokens, adapters)

    monkeypatch.setattr(engine, "decode", decode)


async def test_engine_failure_ends_the_request_with_error_and_the_scheduler_recovers(
    idle, inference, make_request, engine, monkeypatch
):
    _fail_decode_once(monkeypatch, engine, after_calls=2)
    events = await events_of(inference, make_request(STORY, max_new_tokens=10, ignore_eos=True))
    finishes = [e for e in events if isinstance(e, FinishEvent)]
    assert [f.reason for f in finishes] == [FinishReason.ERROR]
    assert 0 < sum(len(e.token_ids) for e in events if isinstance(e, TokenEvent)) < 10
    assert await _wait(lambda: not idle._running and idle._batch.size == 0)
    monkeypatch.undo()
    result = await inference.collect(make_request(FRANCE, max_new_tokens=3))
    assert len(result.completions[0].token_ids) == 3


async def test_engine_failure_finishes_every_completion(idle, inference, make_request, engine, monkeypatch):
    _fail_decode_once(monkeypatch, engine, after_calls=2)
    events = await events_of(inference, make_request(STORY, n=2, temperature=1.0, seed=1, max_new_tokens=10))
    finishes = sorted((e.index, e.reason) for e in events if isinstance(e, FinishEvent))
    assert finishes == [(0, FinishReason.ERROR), (1, FinishReason.ERROR)]
    assert isinstance(events[-1], DoneEvent)


async def test_largest_seed_with_n_wraps_and_spares_other_requests(idle, inference, make_request):
    other = asyncio.create_task(inference.collect(make_request(STORY, max_new_tokens=12, ignore_eos=True)))
    try:
        await _wait(lambda: idle._running)
        big = await inference.collect(make_request(FRANCE, n=2, temperature=1.0, seed=2**64 - 1, max_new_tokens=4))
        assert [len(c.token_ids) for c in big.completions] == [4, 4]
        result = await other
        assert result.completions[0].finish.reason is FinishReason.LENGTH
        assert len(result.completions[0].token_ids) == 12
    finally:  # whatever happened, leave an idle scheduler to the next test
        await asyncio.gather(other, return_exceptions=True)
        await _wait(lambda: not idle._running and not idle.queue_depth)


# -- timings and usage ----------------------------------------------------------------------------------


async def test_done_event_usage_and_timings(idle, inference, make_request):
    events = await events_of(inference, make_request(FRANCE, max_new_tokens=4))
    assert isinstance(events[-1], DoneEvent)
    assert sum(isinstance(e, DoneEvent) for e in events) == 1
    done = events[-1]
    assert done.usage.completion_tokens == 4 and done.usage.total_tokens == done.usage.prompt_tokens + 4
    t = done.timings
    assert 0 <= t.queue_s <= t.time_to_first_token_s <= t.total_s


async def test_sampling_object_is_validated_by_the_scheduler_itself(scheduler, engine):
    from genai_core.errors import InvalidArgument
    from genai_inference.types import GenerationRequest

    too_many = GenerationRequest("x", engine.info.id, (1, 2, 3), "", Sampling(n=scheduler.max_batch_size + 1))
    with pytest.raises(InvalidArgument) as info:
        async for _ in scheduler.generate(too_many):
            pass
    assert info.value.field_violations[0].field == "sampling.n"


async def test_metrics_count_steps_and_tokens(idle, inference, make_request):
    metrics = idle.metrics
    steps, tokens = _sample(metrics.batch_size, "_count"), _sample(metrics.generated_tokens, "_total")
    await inference.collect(make_request(STORY, max_new_tokens=5, ignore_eos=True))
    assert _sample(metrics.batch_size, "_count") - steps == 4  # the first token comes from the prefill
    assert _sample(metrics.generated_tokens, "_total") - tokens == 5


def _sample(metric, suffix: str) -> float:
    """The value of a prometheus metric's sample named <name><suffix>."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                return sample.value
    raise AssertionError(f"no {suffix} sample in {metric}")


async def _wait(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()
