"""The Inference domain over the shared Scheduler: models and adapters, validation with field errors,
structured output, tool calls."""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import pytest
from genai_core.errors import InvalidArgument, NotFound
from genai_inference.chat import ChatOptions, CompletionResult, split_tool_calls
from genai_inference.types import (
    Constraint,
    ConstraintKind,
    FinishEvent,
    FinishReason,
    Sampling,
    TokenEvent,
    ToolSpec,
)

MODEL = "smollm2-135m-instruct"
FRANCE = "What is the capital of France?"
STORY = "Write a long story about a dragon who learns to fly."

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather of a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 16},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 16},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


def field_of(exc: InvalidArgument) -> str:
    assert exc.field_violations, f"no field violation in {exc!r}"
    return exc.field_violations[0].field


# -- models ---------------------------------------------------------------------------------------------


def test_models_and_resolve(inference, engine):
    base = inference.base
    assert base.id == MODEL and base.engine == "torch" and not base.is_adapter
    assert base.vocab_size == engine.info.vocab_size and base.context_length == 8192
    assert base.has_chat_template
    assert inference.models() == [base]
    assert inference.resolve("") == (base, None)
    assert inference.resolve(f"  {MODEL} ") == (base, None)
    assert inference.get_model("") == base


@pytest.mark.parametrize("model", ["gpt-4", f"other-model:{MODEL}", f"{MODEL}:nope", "nope", f"{MODEL}:"])
def test_unknown_model_or_adapter_is_not_found(inference, make_request, model):
    with pytest.raises(NotFound):
        inference.resolve(model)
    with pytest.raises(NotFound):
        make_request(FRANCE, model=model)


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_new_tokens": 0}, "sampling.max_new_tokens"),
        ({"max_new_tokens": 10**6}, "sampling.max_new_tokens"),
        ({"max_new_tokens": 257}, "sampling.max_new_tokens"),  # the settings' cap is 256
        ({"min_new_tokens": 20, "max_new_tokens": 10}, "sampling.min_new_tokens"),
        ({"temperature": -1.0}, "sampling.temperature"),
        ({"temperature": 11.0}, "sampling.temperature"),
        ({"top_p": 0.0}, "sampling.top_p"),
        ({"top_p": 1.5}, "sampling.top_p"),
        ({"top_k": -1}, "sampling.top_k"),
        ({"min_p": 1.0}, "sampling.min_p"),
        ({"repetition_penalty": 0.0}, "sampling.repetition_penalty"),
        ({"presence_penalty": 2.5}, "sampling.presence_penalty"),
        ({"frequency_penalty": -3.0}, "sampling.frequency_penalty"),
        ({"n": 100}, "sampling.n"),
        ({"n": 0}, "sampling.n"),
        ({"top_logprobs": 21}, "sampling.top_logprobs"),
        ({"prompt_logprobs": 21}, "sampling.prompt_logprobs"),
        ({"stop": ("",)}, "sampling.stop_sequences"),
        ({"stop": tuple(f"s{i}" for i in range(9))}, "sampling.stop_sequences"),
    ],
)
def test_bad_sampling_names_the_field(make_request, params, field):
    with pytest.raises(InvalidArgument) as info:
        make_request(FRANCE, **params)
    assert field_of(info.value) == field
    assert info.value.field_violations[0].description


def test_empty_prompt(inference):
    with pytest.raises(InvalidArgument) as info:
        inference.request("", "", text="", sampling=Sampling(max_new_tokens=4), constraint=None)
    assert field_of(info.value) == "prompt"


def test_prompt_over_the_context(make_request):
    with pytest.raises(InvalidArgument) as info:
        make_request(ids=[100] * 8192, max_new_tokens=4)
    assert field_of(info.value) == "prompt"
    with pytest.raises(InvalidArgument) as info:  # fits alone, but not with max_new_tokens on top
        make_request(ids=[100] * 8180, max_new_tokens=16)
    assert field_of(info.value) == "prompt"
    assert "8192" in str(info.value)


def test_token_id_beyond_the_vocabulary(make_request, vocab_size):
    with pytest.raises(InvalidArgument) as info:
        make_request(ids=[1, 2, vocab_size], max_new_tokens=4)
    assert field_of(info.value) == "prompt.token_ids"
    assert str(vocab_size) in str(info.value)


async def test_token_ids_prompt_runs_as_given(inference, make_request, tokenizer):
    ids = tokenizer("The capital of France is", add_special_tokens=False).input_ids
    result = await inference.collect(make_request(ids=ids, max_new_tokens=3))
    assert result.done.usage.prompt_tokens == len(ids)
    assert len(result.completions[0].token_ids) == 3


def test_chat_validation(inference):
    with pytest.raises(InvalidArgument) as info:
        inference.render_chat([], ChatOptions())
    assert field_of(info.value) == "messages"
    with pytest.raises(InvalidArgument) as info:
        inference.render_chat([{"role": "user", "content": "hi"}, {"content": "no role"}], ChatOptions())
    assert field_of(info.value) == "messages[1].role"
    with pytest.raises(InvalidArgument) as info:
        inference.render_chat(
            [{"role": "user", "content": "hi"}], ChatOptions(tools=(WEATHER,), tool_choice="named", tool_name="nope")
        )
    assert field_of(info.value) == "tool_choice.function_name"
    for choice in ("required", "named"):  # the rule's one owner: the gateway and servicer do not repeat it
        with pytest.raises(InvalidArgument) as info:
            inference.render_chat([{"role": "user", "content": "hi"}], ChatOptions(tool_choice=choice, tool_name="x"))
        assert field_of(info.value) == "tool_choice"


def test_render_chat_with_tools_adds_the_tool_prompt(inference):
    plain, constraint = inference.render_chat([{"role": "user", "content": "hi"}], ChatOptions())
    assert constraint is None
    assert plain.endswith("<|im_start|>assistant\n")
    text, constraint = inference.render_chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        ChatOptions(tools=(WEATHER,), tool_choice="required"),
    )
    assert constraint.kind is ConstraintKind.TOOL_CALLS
    assert constraint.value.mode == "required" and constraint.value.tools == (WEATHER,)
    assert text.count("<|im_start|>system") == 1  # merged into the existing system message
    assert "Be brief." in text and '"get_weather"' in text and "<tool_call>" in text
    none_text, none_constraint = inference.render_chat(
        [{"role": "user", "content": "hi"}], ChatOptions(tools=(WEATHER,), tool_choice="none")
    )
    assert none_constraint is None and "get_weather" not in none_text


@pytest.mark.parametrize(
    "constraint",
    [
        Constraint(ConstraintKind.JSON_SCHEMA, {"type": "nonsense"}),
        Constraint(ConstraintKind.JSON_SCHEMA, {"type": "object", "properties": {"a": {"minimum": "x"}}}),
        Constraint(ConstraintKind.REGEX, "(unclosed"),
        Constraint(ConstraintKind.CHOICES, ()),
    ],
)
async def test_invalid_constraint_is_invalid_argument_and_the_service_keeps_working(
    inference, make_request, constraint
):
    with pytest.raises(InvalidArgument) as info:
        await inference.collect(make_request(FRANCE, constraint=constraint))
    assert field_of(info.value) == "constraint"
    result = await inference.collect(make_request(FRANCE, max_new_tokens=2))
    assert len(result.completions[0].token_ids) == 2


# -- structured output ----------------------------------------------------------------------------------


async def test_json_schema_output_parses_and_validates(inference, make_request):
    result = await inference.collect(
        make_request(
            "Describe a person as JSON with name, age and city.",
            max_new_tokens=48,
            constraint=Constraint(ConstraintKind.JSON_SCHEMA, PERSON),
        )
    )
    completion = result.completions[0]
    value = json.loads(completion.text)
    jsonschema.validate(value, PERSON)
    assert completion.finish.reason is FinishReason.STOP


async def test_json_object_output_parses(inference, make_request):
    result = await inference.collect(
        make_request(
            "Give me a JSON object.",
            max_new_tokens=24,
            temperature=0.7,
            seed=1,
            constraint=Constraint(ConstraintKind.JSON_OBJECT, None),
        )
    )
    completion = result.completions[0]
    if completion.finish.reason is FinishReason.STOP:
        assert isinstance(json.loads(completion.text), dict)
    else:  # cut by max_new_tokens: at least a JSON object's prefix
        assert completion.text.startswith("{")


async def test_regex_output_matches(inference, make_request):
    pattern = r"[A-Z][a-z]{2,6}-[0-9]{3}"
    result = await inference.collect(
        make_request(
            "Invent a product code.",
            max_new_tokens=16,
            temperature=0.8,
            seed=5,
            constraint=Constraint(ConstraintKind.REGEX, pattern),
        )
    )
    completion = result.completions[0]
    assert re.fullmatch(pattern, completion.text), completion.text
    assert completion.finish.reason is FinishReason.STOP


async def test_choices_output_is_one_of_them(inference, make_request):
    choices = ("red", "green", "blue")
    for seed in (1, 2):
        result = await inference.collect(
            make_request(
                "What color is the sky?",
                max_new_tokens=8,
                temperature=1.0,
                seed=seed,
                constraint=Constraint(ConstraintKind.CHOICES, choices),
            )
        )
        assert result.completions[0].text in choices
        assert result.completions[0].finish.reason is FinishReason.STOP


# -- tools ----------------------------------------------------------------------------------------------


async def test_tool_choice_required_gives_valid_tool_calls(inference):
    text, constraint = inference.render_chat(
        [{"role": "user", "content": "What is the weather like in Paris?"}],
        ChatOptions(tools=(WEATHER,), tool_choice="required", parallel_tool_calls=False),
    )
    request = inference.request(
        "",
        "",
        text=text,
        sampling=Sampling(max_new_tokens=48, temperature=0.0),
        constraint=constraint,
        add_special_tokens=False,
    )
    result = await inference.collect(request, tools=True)
    completion = result.completions[0]
    assert completion.finish.reason is FinishReason.TOOL_CALLS
    assert len(completion.tool_calls) == 1
    call = completion.tool_calls[0]
    assert call.name == "get_weather"
    assert call.id.startswith("call_")
    jsonschema.validate(call.arguments, WEATHER.parameters)
    assert json.loads(call.raw_arguments) == call.arguments
    assert "<tool_call>" not in completion.text


def test_split_tool_calls_moves_calls_out_of_the_text():
    result = CompletionResult(
        0,
        text='Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
        finish=FinishEvent(0, FinishReason.STOP),
    )
    split_tool_calls(result)
    assert result.text == "Sure."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("f", {"x": 1})]  # the repeat is dropped
    assert result.finish.reason is FinishReason.TOOL_CALLS
    plain = CompletionResult(0, text="no calls here", finish=FinishEvent(0, FinishReason.STOP))
    split_tool_calls(plain)
    assert plain.tool_calls == [] and plain.finish.reason is FinishReason.STOP


# -- adapters -------------------------------------------------------------------------------------------


async def _greedy(inference, make_request, model: str = "", prompt: str = STORY, n: int = 10) -> list[int]:
    result = await inference.collect(make_request(prompt, model=model, max_new_tokens=n, ignore_eos=True))
    return result.completions[0].token_ids


@pytest.mark.slow  # > 10 s on a busy 2-core machine
async def test_adapter_loads_is_listed_and_changes_the_output(idle, inference, make_request, lora_path, restore_engine):
    base_before = await _greedy(inference, make_request)
    info = await asyncio.to_thread(inference.load_adapter, "rand-a", lora_path)
    assert info.id == f"{MODEL}:rand-a"
    assert info.is_adapter and info.base_model == MODEL
    assert info.source.endswith(lora_path) and len(info.revision) == 64
    assert [m.id for m in inference.models()] == [MODEL, f"{MODEL}:rand-a"]
    assert inference.get_model("rand-a") == info
    assert inference.get_model(f"{MODEL}:rand-a") == info
    assert inference.resolve("rand-a") == (inference.base, "rand-a")

    adapted = await _greedy(inference, make_request, model=f"{MODEL}:rand-a")
    assert adapted != base_before
    assert await _greedy(inference, make_request, model="rand-a") == adapted  # the bare name works too
    result = await inference.collect(make_request(FRANCE, model="rand-a", max_new_tokens=2))
    assert result.model == f"{MODEL}:rand-a"
    # Base requests are not affected by a loaded adapter.
    assert await _greedy(inference, make_request) == base_before

    inference.unload_adapter("rand-a")
    assert inference.models() == [inference.base]
    with pytest.raises(NotFound):
        make_request(FRANCE, model=f"{MODEL}:rand-a")
    with pytest.raises(NotFound):
        inference.unload_adapter("rand-a")


@pytest.mark.slow  # > 10 s on a busy 2-core machine
async def test_mixed_batch_of_base_and_adapter_matches_each_alone(
    idle, inference, make_request, lora_path, restore_engine
):
    await asyncio.to_thread(inference.load_adapter, "rand-b", lora_path)
    jobs = [("", STORY), ("rand-b", STORY), ("", FRANCE), ("rand-b", FRANCE)]
    alone = [await _greedy(inference, make_request, model, prompt) for model, prompt in jobs]
    assert alone[0] != alone[1]

    log: list[int] = []

    async def run(i: int, model: str, prompt: str) -> list[int]:
        tokens = []
        async for event in inference.stream(make_request(prompt, model=model, max_new_tokens=10, ignore_eos=True)):
            if isinstance(event, TokenEvent):
                tokens.extend(event.token_ids)
                log.append(i)
        return tokens

    together = await asyncio.gather(*(run(i, m, p) for i, (m, p) in enumerate(jobs)))
    assert list(together) == alone
    assert set(log[:8]) == {0, 1, 2, 3}  # they really ran in one batch, interleaved


async def test_base_model_works_after_unloading_the_last_adapter(
    idle, inference, make_request, lora_path, restore_engine
):
    base_before = await _greedy(inference, make_request)
    await asyncio.to_thread(inference.load_adapter, "rand-c", lora_path)
    inference.unload_adapter("rand-c")
    assert await _greedy(inference, make_request) == base_before


async def test_unload_by_base_colon_adapter(inference, lora_path, restore_engine):
    await asyncio.to_thread(inference.load_adapter, "rand-d", lora_path)
    info = inference.unload_adapter(f"{MODEL}:rand-d")
    assert info.id == f"{MODEL}:rand-d"


async def test_unloading_an_adapter_in_use_spares_other_requests(
    idle, inference, make_request, lora_path, restore_engine
):
    await asyncio.to_thread(inference.load_adapter, "rand-e", lora_path)
    base_events, adapter_events = [], []

    async def run(model: str, sink: list):
        async for event in inference.stream(make_request(STORY, model=model, max_new_tokens=24, ignore_eos=True)):
            sink.append(event)

    tasks = [asyncio.create_task(run("", base_events)), asyncio.create_task(run("rand-e", adapter_events))]
    try:
        for _ in range(3000):
            if len(base_events) >= 3 and len(adapter_events) >= 3:
                break
            await asyncio.sleep(0.01)
        inference.unload_adapter("rand-e")
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
    base_finish = [e for e in base_events if isinstance(e, FinishEvent)]
    assert [f.reason for f in base_finish] == [FinishReason.LENGTH]
    assert sum(len(e.token_ids) for e in base_events if isinstance(e, TokenEvent)) == 24


@pytest.mark.parametrize("path", ["..", "../elsewhere", "/etc", "random-lora/../../x"])
def test_adapter_path_outside_the_adapters_dir(inference, path):
    with pytest.raises(InvalidArgument) as info:
        inference.load_adapter("outside", path)
    assert field_of(info.value) == "path"
    assert inference.models() == [inference.base]


def test_adapter_path_that_is_not_an_adapter(inference, adapters_dir, lora_path):
    (adapters_dir / "empty").mkdir(exist_ok=True)
    (adapters_dir / "file.txt").write_text("x")
    for path in ("empty", "file.txt", "missing"):
        with pytest.raises(InvalidArgument) as info:
            inference.load_adapter("broken", path)
        assert field_of(info.value) == "path"
    assert inference.models() == [inference.base]


@pytest.mark.parametrize("name", ["", "a:b", MODEL])
def test_bad_adapter_name(inference, lora_path, name):
    with pytest.raises(InvalidArgument) as info:
        inference.load_adapter(name, lora_path)
    assert field_of(info.value) == "adapter_name"


def test_unload_unknown_adapter_is_not_found(inference):
    with pytest.raises(NotFound):
        inference.unload_adapter("never-loaded")
