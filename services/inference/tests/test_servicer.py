"""InferenceService over an in-process gRPC server with the production interceptors."""

from __future__ import annotations

import asyncio
import json

import grpc
import jsonschema
import pytest
from genai.inference.v1 import inference_service_pb2 as pb
from genai_core.status import field_violations
from google.protobuf import struct_pb2

MODEL = "smollm2-135m-instruct"
FRANCE = "What is the capital of France?"
STORY = "Write a long story about a dragon who learns to fly."


def _sampling(**fields) -> pb.SamplingParams:
    fields.setdefault("temperature", 0.0)
    fields.setdefault("max_new_tokens", 8)
    return pb.SamplingParams(**fields)


def _chat(question: str = FRANCE, **fields) -> dict:
    return {"messages": [pb.ChatMessage(role="user", content=question)], **fields}


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _stream_error(stream) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    return info.value


def _struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _check_usage_and_timings(message) -> None:
    usage, timings = message.usage, message.timings
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert message.HasField("timings")
    total = timings.total_duration.ToNanoseconds()
    assert 0 < timings.time_to_first_token.ToNanoseconds() <= total
    assert 0 <= timings.queue_duration.ToNanoseconds() <= total


# -- generation -----------------------------------------------------------------------------------------


async def test_generate(stub):
    reply = await stub.Generate(
        pb.GenerateRequest(
            request_id="gen-1",
            text="The capital of France is",
            sampling=_sampling(max_new_tokens=6),
            return_token_ids=True,
        )
    )
    assert reply.request_id == "gen-1"
    assert reply.model == MODEL
    assert len(reply.completions) == 1
    completion = reply.completions[0]
    assert completion.index == 0 and completion.text
    assert completion.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
    assert len(completion.token_ids) == reply.usage.completion_tokens <= 6
    _check_usage_and_timings(reply)


async def test_generate_without_request_id_gets_one(stub):
    reply = await stub.Generate(pb.GenerateRequest(text="Hello", sampling=_sampling(max_new_tokens=2)))
    assert len(reply.request_id) == 32


async def test_generate_stream_matches_generate(stub):
    request = dict(text="The capital of France is", sampling=_sampling(max_new_tokens=8), return_token_ids=True)
    unary = await stub.Generate(pb.GenerateRequest(request_id="u-1", **request))
    messages = [m async for m in stub.GenerateStream(pb.GenerateStreamRequest(request_id="gs-1", **request))]
    assert all(m.request_id == "gs-1" for m in messages)
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds.count("complete") == 1 and kinds[-1] == "complete"
    assert "error" not in kinds
    deltas = [m.delta for m in messages if m.WhichOneof("event") == "delta"]
    assert "".join(d.text for d in deltas) == unary.completions[0].text
    assert [t for d in deltas for t in d.token_ids] == list(unary.completions[0].token_ids)
    complete = messages[-1].complete
    assert complete.model == MODEL
    assert [c.finish_reason for c in complete.choices] == [unary.completions[0].finish_reason]
    assert complete.usage.completion_tokens == unary.usage.completion_tokens
    _check_usage_and_timings(complete)


async def test_generate_stop_sequence_and_logprobs(stub):
    reply = await stub.Generate(
        pb.GenerateRequest(
            request_id="gen-stop",
            text="The capital of France is",
            sampling=_sampling(max_new_tokens=8, stop_sequences=["Paris"], top_logprobs=2),
        )
    )
    completion = reply.completions[0]
    assert completion.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert completion.stop_sequence == "Paris"
    assert "Paris" not in completion.text
    assert completion.logprobs  # top_logprobs implies logprobs
    for lp in completion.logprobs:
        assert lp.logprob <= 0 and len(lp.top_logprobs) == 2


async def test_generate_echo_and_prompt_logprobs(stub):
    prompt = "The capital of France is"
    reply = await stub.Generate(
        pb.GenerateRequest(text=prompt, sampling=_sampling(max_new_tokens=3, echo=True, prompt_logprobs=1))
    )
    assert reply.completions[0].text.startswith(prompt)
    assert len(reply.prompt_logprobs) == reply.usage.prompt_tokens
    assert reply.prompt_logprobs[0].logprob == 0.0
    assert all(p.logprob <= 0 and len(p.top_logprobs) == 1 for p in reply.prompt_logprobs[1:])


async def test_generate_n_two(stub):
    reply = await stub.Generate(
        pb.GenerateRequest(
            text="Once upon a time",
            sampling=_sampling(n=2, temperature=0.9, seed=11, max_new_tokens=6, ignore_eos=True),
        )
    )
    assert [c.index for c in reply.completions] == [0, 1]
    assert reply.usage.completion_tokens == 12


async def test_generate_token_ids_prompt(stub, tokenizer):
    ids = tokenizer("The capital of France is", add_special_tokens=False).input_ids
    reply = await stub.Generate(
        pb.GenerateRequest(token_ids=pb.TokenIds(ids=ids), sampling=_sampling(max_new_tokens=3))
    )
    assert reply.usage.prompt_tokens == len(ids)


async def test_chat(stub):
    reply = await stub.Chat(pb.ChatRequest(request_id="chat-1", sampling=_sampling(max_new_tokens=16), **_chat()))
    assert reply.request_id == "chat-1" and reply.model == MODEL
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
    _check_usage_and_timings(reply)


async def test_chat_stream_matches_chat(stub):
    fields = dict(sampling=_sampling(max_new_tokens=16), **_chat())
    unary = await stub.Chat(pb.ChatRequest(**fields))
    messages = [m async for m in stub.ChatStream(pb.ChatStreamRequest(request_id="cs-1", **fields))]
    assert all(m.request_id == "cs-1" for m in messages)
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds.count("complete") == 1 and kinds[-1] == "complete"
    deltas = [m.delta for m in messages[:-1]]
    assert deltas[0].role == "assistant"
    assert all(d.role == "" for d in deltas[1:])
    assert "".join(d.content for d in deltas) == unary.choices[0].message.content
    complete = messages[-1].complete
    assert complete.model == MODEL
    assert [c.finish_reason for c in complete.choices] == [unary.choices[0].finish_reason]
    _check_usage_and_timings(complete)


@pytest.mark.parametrize(
    "city",
    [
        {"type": "string"},
        {"type": "string", "maxLength": 16},  # a Struct number arrives as a double; must still work
    ],
    ids=["plain", "maxLength"],
)
async def test_chat_with_required_tool(stub, city):
    weather = pb.Tool(
        name="get_weather",
        description="Current weather of a city.",
        parameters=_struct(
            {
                "type": "object",
                "properties": {"city": city},
                "required": ["city"],
                "additionalProperties": False,
            }
        ),
    )
    reply = await stub.Chat(
        pb.ChatRequest(
            sampling=_sampling(max_new_tokens=40),
            tools=[weather],
            parallel_tool_calls=False,
            tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
            **_chat("What is the weather in Paris?"),
        )
    )
    choice = reply.choices[0]
    assert choice.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.name == "get_weather" and call.id
    assert call.WhichOneof("arguments_value") == "arguments"
    assert set(call.arguments.keys()) == {"city"}
    assert choice.message.content == ""


async def test_chat_stream_with_required_tool(stub):
    weather = pb.Tool(
        name="get_weather",
        description="Current weather of a city.",
        parameters=_struct(
            {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            }
        ),
    )
    messages = [
        m
        async for m in stub.ChatStream(
            pb.ChatStreamRequest(
                request_id="cs-tools",
                sampling=_sampling(max_new_tokens=40),
                tools=[weather],
                parallel_tool_calls=False,
                tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
                **_chat("What is the weather in Paris?"),
            )
        )
    ]
    deltas = [m.delta for m in messages if m.WhichOneof("event") == "delta"]
    assert "<tool_call>" not in "".join(d.content for d in deltas)  # the markup never streams as content
    pieces = [t for d in deltas for t in d.tool_calls]
    assert len(pieces) == 1 and pieces[0].name == "get_weather"
    assert set(json.loads(pieces[0].arguments_delta)) == {"city"}
    complete = messages[-1].complete
    assert complete.choices[0].finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert complete.choices[0].tool_calls[0].name == "get_weather"
    assert complete.choices[0].tool_calls[0].id == pieces[0].id


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"},
        {"type": "string", "maxLength": 12},  # a Struct number arrives as a double; must still work
    ],
    ids=["pattern", "maxLength"],
)
async def test_chat_with_json_schema_constraint(stub, answer):
    schema = {"type": "object", "properties": {"answer": answer}, "required": ["answer"], "additionalProperties": False}
    reply = await stub.Chat(
        pb.ChatRequest(
            sampling=_sampling(max_new_tokens=24),
            constraint=pb.OutputConstraint(json_schema=_struct(schema)),
            **_chat(),
        )
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    assert reply.choices[0].finish_reason == pb.FINISH_REASON_STOP


# -- cancel ---------------------------------------------------------------------------------------------


async def test_cancel_rpc_stops_a_running_stream(stub, idle):
    stream = stub.GenerateStream(
        pb.GenerateStreamRequest(
            request_id="to-cancel", text=STORY, sampling=_sampling(max_new_tokens=200, ignore_eos=True)
        )
    )
    messages, cancelled = [], None
    async for message in stream:
        messages.append(message)
        if cancelled is None and len(messages) == 2:
            reply = await stub.Cancel(pb.CancelRequest(request_id="c-1", target_request_id="to-cancel"))
            assert reply.request_id == "c-1"
            cancelled = reply.cancelled
    assert cancelled is True
    assert messages[-1].WhichOneof("event") == "complete"
    assert [c.finish_reason for c in messages[-1].complete.choices] == [pb.FINISH_REASON_CANCELLED]
    assert messages[-1].complete.usage.completion_tokens < 10
    assert all(m.request_id == "to-cancel" for m in messages)
    again = await stub.Cancel(pb.CancelRequest(target_request_id="to-cancel"))
    assert again.cancelled is False


async def test_cancel_needs_a_target(stub):
    error = await _error(stub.Cancel(pb.CancelRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["target_request_id"]


async def test_client_cancelling_the_call_frees_the_slot(stub, idle, wait_for):
    call = stub.GenerateStream(
        pb.GenerateStreamRequest(text=STORY, sampling=_sampling(max_new_tokens=200, ignore_eos=True))
    )
    seen = 0
    async for _ in call:
        seen += 1
        if seen == 2:
            break
    call.cancel()
    assert await wait_for(lambda: not idle._running, 10)


async def test_stream_failing_mid_way_ends_with_one_error_message(stub, idle, engine, monkeypatch):
    real = engine.decode
    calls = {"n": 0}

    def decode(batch, tokens, adapters):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated engine failure")
        return real(batch, tokens, adapters)

    monkeypatch.setattr(engine, "decode", decode)
    messages = [
        m
        async for m in stub.GenerateStream(
            pb.GenerateStreamRequest(
                request_id="fails", text=STORY, sampling=_sampling(max_new_tokens=10, ignore_eos=True)
            )
        )
    ]
    assert messages[0].WhichOneof("event") == "delta"
    assert messages[-1].WhichOneof("event") in ("error", "complete")
    if messages[-1].WhichOneof("event") == "complete":
        assert messages[-1].complete.choices[0].finish_reason == pb.FINISH_REASON_ERROR


# -- models ---------------------------------------------------------------------------------------------


async def test_list_get_models_and_info(stub, settings, vocab_size):
    listed = await stub.ListModels(pb.ListModelsRequest(request_id="lm-1"))
    assert listed.request_id == "lm-1"
    assert listed.default_model == MODEL
    assert [m.id for m in listed.models] == [MODEL]
    model = listed.models[0]
    assert model.kind == pb.Model.KIND_BASE and model.engine == "torch"
    assert model.context_length == 8192 and model.max_input_tokens == 8191
    assert model.vocab_size == vocab_size and model.has_chat_template and len(model.revision) == 64
    adapters = await stub.ListModels(pb.ListModelsRequest(kind=pb.Model.KIND_ADAPTER))
    assert list(adapters.models) == []

    got = await stub.GetModel(pb.GetModelRequest(model=""))
    assert got.model == model
    assert (await stub.GetModel(pb.GetModelRequest(model=MODEL))).model == model
    missing = await _error(stub.GetModel(pb.GetModelRequest(model="nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    info = await stub.GetInfo(pb.GetInfoRequest(request_id="gi-1"))
    assert info.request_id == "gi-1"
    assert info.engine == "torch"
    assert info.default_model == model
    assert info.max_batch_size == settings.max_batch_size
    assert info.max_top_logprobs == settings.max_top_logprobs and info.max_samples == settings.max_samples


async def test_published_max_new_tokens_is_accepted(stub, settings):
    model = (await stub.GetModel(pb.GetModelRequest())).model
    assert model.max_new_tokens <= settings.max_new_tokens
    # A value the server publishes is accepted (a one-token choice keeps the generation short).
    reply = await stub.Generate(
        pb.GenerateRequest(
            text="Hi",
            sampling=_sampling(max_new_tokens=model.max_new_tokens),
            constraint=pb.OutputConstraint(choices=pb.ChoiceList(choices=["yes"])),
        )
    )
    assert reply.completions[0].text == "yes"


async def test_load_and_unload_adapter(stub, lora_path, restore_engine, idle):
    loaded = await stub.LoadAdapter(
        pb.LoadAdapterRequest(request_id="la-1", adapter_name="grpc-lora", base_model=MODEL, path=lora_path)
    )
    assert loaded.request_id == "la-1"
    assert loaded.model.id == f"{MODEL}:grpc-lora"
    assert loaded.model.kind == pb.Model.KIND_ADAPTER and loaded.model.base_model == MODEL
    listed = await stub.ListModels(pb.ListModelsRequest(kind=pb.Model.KIND_ADAPTER))
    assert [m.id for m in listed.models] == [f"{MODEL}:grpc-lora"]
    both = await stub.ListModels(pb.ListModelsRequest())
    assert [m.id for m in both.models] == [MODEL, f"{MODEL}:grpc-lora"]

    reply = await stub.Generate(
        pb.GenerateRequest(model=f"{MODEL}:grpc-lora", text="Hello", sampling=_sampling(max_new_tokens=3))
    )
    assert reply.model == f"{MODEL}:grpc-lora"
    again = await _error(stub.LoadAdapter(pb.LoadAdapterRequest(adapter_name="grpc-lora", path=lora_path)))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS

    unloaded = await stub.UnloadAdapter(pb.UnloadAdapterRequest(request_id="ua-1", adapter_name="grpc-lora"))
    assert unloaded.request_id == "ua-1" and unloaded.model.id == f"{MODEL}:grpc-lora"
    gone = await _error(stub.GetModel(pb.GetModelRequest(model=f"{MODEL}:grpc-lora")))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    gone = await _error(stub.Generate(pb.GenerateRequest(model="grpc-lora", text="Hello", sampling=_sampling())))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    gone = await _error(stub.UnloadAdapter(pb.UnloadAdapterRequest(adapter_name="grpc-lora")))
    assert gone.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"adapter_name": "x", "path": "../.."}, "path"),
        ({"adapter_name": "x", "path": "/etc"}, "path"),
        ({"adapter_name": "x", "path": "missing"}, "path"),
        ({"adapter_name": "x", "artifact_id": "../a-1"}, "artifact_id"),
        ({"adapter_name": "x", "base_model": "other", "path": "random-lora"}, "base_model"),
        ({"adapter_name": "", "path": "random-lora"}, "adapter_name"),
    ],
)
async def test_load_adapter_bad_input(stub, lora_path, request_fields, field):
    error = await _error(stub.LoadAdapter(pb.LoadAdapterRequest(**request_fields)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == [field]


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"text": "Hi", "sampling": {"max_new_tokens": 0}}, "sampling.max_new_tokens"),
        ({"text": "Hi", "sampling": {"max_new_tokens": 100000}}, "sampling.max_new_tokens"),
        ({"text": "Hi", "sampling": {"temperature": -1.0}}, "sampling.temperature"),
        ({"text": "Hi", "sampling": {"top_p": 0.0}}, "sampling.top_p"),
        ({"text": "Hi", "sampling": {"n": 100}}, "sampling.n"),
        ({"text": "Hi", "sampling": {"top_logprobs": 100}}, "sampling.top_logprobs"),
        ({"text": "Hi", "sampling": {"stop_sequences": [""]}}, "sampling.stop_sequences"),
        ({}, "prompt"),
        ({"text": ""}, "prompt"),
        ({"token_ids": {"ids": []}}, "prompt"),
        ({"token_ids": {"ids": [1, 2, 49152]}}, "prompt.token_ids"),
        ({"token_ids": {"ids": [100] * 8192}}, "prompt"),
        ({"text": "Hi", "constraint": {"regex": "(unclosed"}}, "constraint"),
    ],
)
@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
async def test_bad_generate_input_is_invalid_argument_with_field(stub, request_fields, field, method):
    fields = dict(request_fields)
    sampling = fields.pop("sampling", {})
    if "token_ids" in fields:
        fields["token_ids"] = pb.TokenIds(**fields["token_ids"])
    if "constraint" in fields:
        fields["constraint"] = pb.OutputConstraint(**fields["constraint"])
    params = pb.SamplingParams(**{"max_new_tokens": 4, **sampling})
    if method == "Generate":
        error = await _error(stub.Generate(pb.GenerateRequest(sampling=params, **fields)))
    else:
        error = await _stream_error(stub.GenerateStream(pb.GenerateStreamRequest(sampling=params, **fields)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert [f for f, _ in field_violations(error)] == [field]


async def test_invalid_json_schema_over_grpc(stub):
    error = await _error(
        stub.Generate(
            pb.GenerateRequest(
                text="Hi",
                sampling=_sampling(),
                constraint=pb.OutputConstraint(json_schema=_struct({"type": "nonsense"})),
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["constraint"]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [pb.ChatMessage(content="no role")]}, "messages[0].role"),
        (
            {
                "messages": [pb.ChatMessage(role="user", content="hi")],
                "tool_choice": pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
            },
            "tool_choice",
        ),
        (
            {"messages": [pb.ChatMessage(role="user", content="hi")], "tools": [pb.Tool(description="nameless")]},
            "tools[0].name",
        ),
        (
            {
                "messages": [pb.ChatMessage(role="user", content="hi")],
                "tools": [pb.Tool(name="get_weather")],
                "tool_choice": pb.ToolChoice(function_name="nope"),
            },
            "tool_choice.function_name",
        ),
    ],
)
@pytest.mark.parametrize("method", ["Chat", "ChatStream"])
async def test_bad_chat_input_is_invalid_argument_with_field(stub, request_fields, field, method):
    if method == "Chat":
        error = await _error(stub.Chat(pb.ChatRequest(sampling=_sampling(), **request_fields)))
    else:
        error = await _stream_error(stub.ChatStream(pb.ChatStreamRequest(sampling=_sampling(), **request_fields)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert [f for f, _ in field_violations(error)] == [field]


async def test_unknown_model_is_not_found(stub):
    error = await _error(stub.Generate(pb.GenerateRequest(model="gpt-4", text="Hi", sampling=_sampling())))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await _error(stub.Chat(pb.ChatRequest(model=f"{MODEL}:nope", sampling=_sampling(), **_chat())))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_server_keeps_serving_after_errors(stub):
    for _ in range(2):
        await _error(stub.Generate(pb.GenerateRequest(token_ids=pb.TokenIds(ids=[10**6]), sampling=_sampling())))
    replies = await asyncio.gather(
        *(stub.Generate(pb.GenerateRequest(text="Hello", sampling=_sampling(max_new_tokens=2))) for _ in range(3))
    )
    assert all(r.usage.completion_tokens == 2 for r in replies)
