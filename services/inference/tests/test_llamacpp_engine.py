"""The llama.cpp backend on the SmolLM2 Q4_1 GGUF: the event contract, greedy agreement with the torch
engine (teacher-forced, since top-2 near ties may swap under Q4_1), stop sequences, cancel, the queue
bound, n, seeds, logprobs, prompt logprobs and constraints.

llama-cpp-python is an optional extra (it compiles llama.cpp), so this module is skipped without it.
The GGUF → safetensors conversion (for the HF tokenizer and the torch reference) is cached under
``GENAI_TEST_CACHE_DIR``, else the repository's ``var/cache``.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

import torch  # noqa: E402
from genai_core.errors import FailedPrecondition, ResourceExhausted  # noqa: E402
from genai_inference.engines.llamacpp_engine import LlamaCppBackend  # noqa: E402
from genai_inference.models import DEFAULT_MODEL, ModelSource, resolve  # noqa: E402
from genai_inference.settings import EngineName, InferenceSettings  # noqa: E402
from genai_inference.types import (  # noqa: E402
    Constraint,
    ConstraintKind,
    DoneEvent,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    Sampling,
    TokenEvent,
)

REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["Write a short poem about the sea and the wind.", "List three uses of a paperclip."]
STEPS = 16


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    if os.environ.get("GENAI_TEST_CACHE_DIR"):
        return Path(os.environ["GENAI_TEST_CACHE_DIR"])
    if (REPO / "var" / "cache").is_dir():
        return REPO / "var" / "cache"
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def source(cache_dir) -> ModelSource:
    return resolve(DEFAULT_MODEL, "", cache_dir)


@pytest.fixture(scope="module")
def tokenizer(source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.directory))


@pytest.fixture(scope="module")
def settings() -> InferenceSettings:
    return InferenceSettings(engine=EngineName.LLAMACPP, threads=2, max_queue=2)


@pytest.fixture(scope="module")
async def backend(settings, source, tokenizer):
    b = LlamaCppBackend(settings, source, tokenizer)
    await b.start()
    yield b
    await b.close()


@pytest.fixture(scope="module")
def chat_ids(tokenizer) -> list[list[int]]:
    return [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for p in PROMPTS
    ]


def request(ids, rid: str = "r", **sampling) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    sampling.setdefault("max_new_tokens", STEPS)
    return GenerationRequest(rid, DEFAULT_MODEL, tuple(ids), "", Sampling(**sampling))


async def run(backend, req: GenerationRequest) -> list:
    return [event async for event in backend.generate(req)]


def completions(events: list, n: int = 1) -> tuple[list[list[int]], list[str], dict[int, FinishEvent], DoneEvent]:
    """Check the contract (one FinishEvent per index, then one DoneEvent, last) and split the events."""
    ids: list[list[int]] = [[] for _ in range(n)]
    texts = [""] * n
    finishes: dict[int, FinishEvent] = {}
    assert isinstance(events[-1], DoneEvent)
    assert sum(isinstance(e, DoneEvent) for e in events) == 1
    for event in events[:-1]:
        if isinstance(event, TokenEvent):
            assert event.index not in finishes, "a token after its completion finished"
            ids[event.index].extend(event.token_ids)
            texts[event.index] += event.text
        else:
            assert isinstance(event, FinishEvent) and event.index not in finishes
            finishes[event.index] = event
    assert sorted(finishes) == list(range(n))
    return ids, texts, finishes, events[-1]


def test_needs_a_gguf(settings, source, tokenizer):
    with pytest.raises(FailedPrecondition, match="GGUF"):
        LlamaCppBackend(settings, replace(source, gguf=None), tokenizer)


async def test_model_info_and_vocabulary(backend, tokenizer, chat_ids):
    info = backend.models()[0]
    assert (info.engine, info.vocab_size, info.context_length, info.quantization) == ("llamacpp", 49152, 4096, "Q4_1")
    assert 2 in backend.eos_token_ids  # <|im_end|>
    for ids in chat_ids:  # the GGUF tokenizes the rendered chat to the very ids the HF tokenizer gave
        text = tokenizer.decode(ids)
        assert backend._llm.tokenize(text.encode(), add_bos=False, special=True) == ids


async def test_greedy_agrees_with_torch(backend, source, chat_ids):
    """Teacher-forced: llama.cpp's argmax after torch's greedy prefix equals torch's next token on most positions."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32).eval()
    for ids in chat_ids:
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)
        reference = out[0, len(ids) :].tolist()
        # Free-running greedy through the backend: STEPS tokens, and it starts like torch (or on a near tie).
        got, _, finishes, done = completions(await run(backend, request(ids, ignore_eos=True)))
        assert len(got[0]) == STEPS and finishes[0].reason is FinishReason.LENGTH
        assert done.usage.completion_tokens == STEPS
        # Teacher-forced through prompt logprobs: row p's top-1 is the prediction after ids + reference[:p].
        forced = request(ids + reference, max_new_tokens=1, prompt_logprobs=1)
        *_, done = completions(await run(backend, forced))
        tops = [t.top[0].token_id for t in done.prompt_logprobs[len(ids) :]]
        agree = sum(a == b for a, b in zip(tops, reference, strict=True)) / STEPS
        assert agree >= 0.5, (agree, tops, reference)
        free = sum(a == b for a, b in zip(got[0], reference, strict=True))
        print(f"teacher-forced agreement {agree:.0%}, free-running identical positions {free}/{STEPS}")


async def test_stop_sequence(backend, chat_ids):
    _, texts, _, _ = completions(await run(backend, request(chat_ids[0], max_new_tokens=24, ignore_eos=True)))
    full = texts[0]
    words = [w for w in re.findall(r"\w{4,}", full[len(full) // 3 :])]
    assert words, full
    stop = words[0]
    _, texts, finishes, _ = completions(
        await run(backend, request(chat_ids[0], max_new_tokens=24, ignore_eos=True, stop=("@@never", stop)))
    )
    assert finishes[0].reason is FinishReason.STOP_SEQUENCE and finishes[0].stop_sequence == stop
    assert texts[0] == full[: full.index(stop)]


async def test_cancel_stops_within_a_token_and_the_queue_is_bounded(backend, chat_ids):
    long = dict(max_new_tokens=400, ignore_eos=True)
    first = backend.generate(request(chat_ids[0], "long", **long))
    events = [await anext(first)]  # running now
    queued = [backend.generate(request(chat_ids[1], f"q{i}", **long)) for i in range(3)]
    tasks = [asyncio.ensure_future(anext(q)) for q in queued[:2]]  # max_queue=2 waiting
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted):
        await anext(queued[2])
    assert backend.cancel("q1") and backend.cancel("q0")  # cancelled while waiting: they end at once
    assert backend.cancel("long")
    assert not backend.cancel("nope")
    events += [e async for e in first]
    ids, _, finishes, _ = completions(events)
    assert finishes[0].reason is FinishReason.CANCELLED
    assert len(ids[0]) < 10  # one token in flight at most, not 400
    for task, gen in zip(tasks, queued[:2], strict=True):
        rest = [await task] + [e async for e in gen]
        ids, _, finishes, _ = completions(rest)
        assert finishes[0].reason is FinishReason.CANCELLED and ids == [[]]


async def test_sampling_n_seed_and_logprobs(backend, chat_ids):
    req = request(
        chat_ids[1],
        n=2,
        temperature=0.9,
        top_p=0.95,
        top_k=50,
        seed=7,
        max_new_tokens=12,
        logprobs=True,
        top_logprobs=2,
        repetition_penalty=1.1,
    )
    a_ids, *_ = completions(await run(backend, req), n=2)
    b_ids, _, _, done = completions(await run(backend, req), n=2)
    assert a_ids == b_ids, "the same seed gives the same completions"
    assert a_ids[0] != a_ids[1], "completion 1 runs with seed + 1"
    assert all(1 <= len(ids) <= 12 for ids in a_ids)
    assert done.usage.completion_tokens == sum(len(ids) for ids in b_ids)  # with logprobs, EOS is sent too
    assert done.usage.cached_prompt_tokens == len(chat_ids[1]) - 1  # the same prompt ran just before
    greedy = await run(backend, request(chat_ids[1], logprobs=True, top_logprobs=2, max_new_tokens=4))
    for event in greedy:
        if isinstance(event, TokenEvent) and event.token_ids:
            (lp,) = event.logprobs
            assert lp.top[0].token_id == lp.token_id and lp.logprob == pytest.approx(lp.top[0].logprob)


async def test_prompt_logprobs_give_a_sane_perplexity(backend, tokenizer):
    text = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. " * 4
    ids = tokenizer(text, add_special_tokens=False).input_ids
    *_, done = completions(await run(backend, request(ids, max_new_tokens=1, prompt_logprobs=0)))
    lps = [t.logprob for t in done.prompt_logprobs]
    assert len(lps) == len(ids) and lps[0] == 0.0 and all(lp <= 0 for lp in lps)
    ppl = torch.exp(-torch.tensor(lps[1:]).mean()).item()
    assert 1.0 < ppl < 20.0  # repeated text: low


async def test_regex_constraint(backend, chat_ids):
    req = replace(request(chat_ids[1], max_new_tokens=8), constraint=Constraint(ConstraintKind.REGEX, "[0-9]{3}"))
    _, texts, finishes, _ = completions(await run(backend, req))
    assert re.fullmatch("[0-9]{3}", texts[0]) and finishes[0].reason is FinishReason.STOP
