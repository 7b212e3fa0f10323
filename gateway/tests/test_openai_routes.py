"""OpenAI-compatible routes, checked with the official `openai` SDK (sync and async) and raw HTTP.

Two kinds of tests:

* conformance tests take ``base_url`` and ``model`` only and assert what any correct inference
  service must satisfy (shapes, SDK parsing, finish reasons, usage, errors a gateway decides), so
  they also run against the real service: ``GENAI_TEST_INFERENCE_TARGET=127.0.0.1:50052
  GENAI_TEST_INFERENCE_MODEL=<id> pytest gateway/tests/test_openai_routes.py``;
* fake tests take ``fake`` too and assert the scripted texts, the exact proto mapping, mid-stream
  errors, overload and cancellation; they skip against a real service.

The sync SDK runs in a worker thread (``asyncio.to_thread``): the gateway and the fake service
live on the test loop, which must keep running while the SDK blocks.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from genai.inference.v1 import inference_service_pb2 as pb
from genai_gateway.settings import GatewaySettings
from google.protobuf import json_format

from gateway.tests.fake_inference import (
    FAIL_PROMPT,
    MISSING_MODEL,
    OVERLOADED,
    REPLY,
    SLOW_PROMPT,
    TIMEOUT,
    TOOL_CALL_ID,
    serve_gateway,
)

# The fake service and the gateway in front of it: base_url, model, fake, inference_target.
pytest_plugins = ["gateway.tests.fake_inference"]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
USER = [{"role": "user", "content": "Say hello in five words."}]
CHUNK_KEYS = {"id", "object", "created", "model", "choices"}
ENVELOPE_KEYS = {"message", "type", "code", "param", "trace_id"}


def _sync(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


def _async(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


def _events(body: str) -> list[str]:
    """The data of each SSE event, asserting the exact framing: 'data: <payload>' and a blank line."""
    assert body.endswith("\n\n"), body[-50:]
    events = body[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
    return [e[len("data: ") :] for e in events]


def _error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS, error
    if param is not None:
        assert error["param"] == param, error
    return error


# -- conformance: any correct inference service ---------------------------------------------------


async def test_chat_sync_sdk(base_url: str, model: str) -> None:
    def run():
        return _sync(base_url).chat.completions.create(model=model, messages=USER, max_tokens=16, temperature=0)

    resp = await asyncio.to_thread(run)
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.model and isinstance(resp.created, int)
    [choice] = resp.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    u = resp.usage
    assert (
        u.prompt_tokens > 0
        and 0 < u.completion_tokens <= 16
        and u.total_tokens == u.prompt_tokens + u.completion_tokens
    )


async def test_chat_async_stream_with_usage(base_url: str, model: str) -> None:
    stream = await _async(base_url).chat.completions.create(
        model=model, messages=USER, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    *body, last_choice, usage = chunks
    assert usage.choices == [] and usage.usage.completion_tokens > 0
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert last_choice.choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in body)
    assert "".join(c.choices[0].delta.content or "" for c in body)


async def test_chat_stream_wire_format(base_url: str, model: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(
            f"{base_url}/v1/chat/completions",
            json={
                "model": model,
                "messages": USER,
                "max_tokens": 8,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    data = _events(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for c in chunks:
        assert set(c) == CHUNK_KEYS | {"usage"} and c["object"] == "chat.completion.chunk"
    for c in chunks[:-1]:
        assert c["usage"] is None
        [choice] = c["choices"]
        assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["delta"] == {} and chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) >= {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


async def test_chat_stream_without_usage_has_no_usage_key(base_url: str, model: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(
            f"{base_url}/v1/chat/completions", json={"model": model, "messages": USER, "max_tokens": 4, "stream": True}
        )
    chunks = [json.loads(d) for d in _events(r.text)[:-1]]
    assert all(set(c) == CHUNK_KEYS for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_chat_required_tool_call(base_url: str, model: str) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=64,
        temperature=0,
    )
    [choice] = resp.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)


async def test_chat_multi_turn_tool_conversation(base_url: str, model: str) -> None:
    # The model calls the tool, the client runs it and sends the result back: the second turn must be
    # rendered (assistant tool call + tool message in the chat template) and answered by the real model.
    sdk = _async(base_url)
    ask = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
    first = await sdk.chat.completions.create(model=model, messages=ask, tools=[WEATHER], tool_choice="required",
                                              max_tokens=64, temperature=0)
    [call] = first.choices[0].message.tool_calls
    history = [*ask, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": [21, 23, 19]})}]
    second = await sdk.chat.completions.create(model=model, messages=history, tools=[WEATHER], max_tokens=16,
                                               temperature=0)
    [choice] = second.choices
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result were in the prompt


async def test_chat_template_kwargs_are_accepted(base_url: str, model: str) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model, messages=USER, max_tokens=8, temperature=0, extra_body={"chat_template_kwargs": {"x": 1}}
    )
    assert resp.choices[0].message.content is not None and resp.usage.completion_tokens > 0


async def test_chat_named_tool_call_streamed(base_url: str, model: str) -> None:
    stream = await _async(base_url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        temperature=0,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    assert call["id"] is None, "the id comes in the first delta of a call only"
                    call["id"], call["name"] = d.id, d.function.name
                call["arguments"] += d.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert isinstance(json.loads(calls[0]["arguments"]), dict)


async def test_chat_json_schema(base_url: str, model: str) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Invent a person."}],
        max_tokens=128,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )
    person = json.loads(resp.choices[0].message.content)
    assert set(person) == {"name", "age"} and isinstance(person["name"], str) and isinstance(person["age"], int)


async def test_chat_json_object(base_url: str, model: str) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Reply with a JSON object."}],
        max_tokens=64,
        temperature=0,
        response_format={"type": "json_object"},
    )
    choice = resp.choices[0]
    assert choice.message.content.lstrip().startswith("{")
    if choice.finish_reason == "stop":  # the constraint guarantees valid JSON only if max_tokens did not cut it off
        assert isinstance(json.loads(choice.message.content), dict)


async def test_chat_logprobs(base_url: str, model: str) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model, messages=USER, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2
    )
    content = resp.choices[0].logprobs.content
    assert 0 < len(content) <= 5
    for t in content:
        assert isinstance(t.token, str) and t.logprob <= 0 and t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 2 and all(a.logprob <= 0 for a in t.top_logprobs)


async def test_chat_n_and_seed(base_url: str, model: str) -> None:
    client = _async(base_url)
    resp = await client.chat.completions.create(model=model, messages=USER, max_tokens=8, n=2, seed=7, temperature=0.8)
    assert [c.index for c in resp.choices] == [0, 1]
    again = await client.chat.completions.create(model=model, messages=USER, max_tokens=8, n=2, seed=7, temperature=0.8)
    assert [c.message.content for c in again.choices] == [c.message.content for c in resp.choices]


async def test_chat_max_tokens_and_stop(base_url: str, model: str) -> None:
    client = _async(base_url)
    resp = await client.chat.completions.create(model=model, messages=USER, max_completion_tokens=2, temperature=0)
    assert resp.choices[0].finish_reason == "length" and resp.usage.completion_tokens == 2
    resp = await client.chat.completions.create(
        model=model, messages=USER, max_tokens=32, temperature=0, stop=["\n", "."]
    )
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert "." not in resp.choices[0].message.content


async def test_completions_echo_logprobs_sync(base_url: str, model: str) -> None:
    """lm-eval's loglikelihood request: echo the prompt with its logprobs and generate nothing."""
    prompt = "The capital of France is Paris"

    def run():
        return _sync(base_url).completions.create(
            model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=1, temperature=0
        )

    resp = await asyncio.to_thread(run)
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    [choice] = resp.choices
    assert choice.text.startswith(prompt)
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) >= 2
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    for token, top in zip(lp.tokens[1:], lp.top_logprobs[1:], strict=True):
        assert token in top and 1 <= len(top) <= 2
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


async def test_completions_lm_eval_loglikelihood(base_url: str, model: str) -> None:
    """lm-eval's local-completions payload: token-id prompts, echo, logprobs=1, max_tokens=1, batched."""
    batch = [[791, 6864, 315, 9822, 374], [791, 6864]]

    def run():
        return _sync(base_url).completions.create(
            model=model, prompt=batch, max_tokens=1, echo=True, logprobs=1, temperature=0, seed=1234
        )

    resp = await asyncio.to_thread(run)
    choices = sorted(resp.choices, key=lambda c: c.index)
    assert [c.index for c in choices] == [0, 1]
    for ids, choice in zip(batch, choices, strict=True):
        lp = choice.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(ids) + 1  # prompt + 1 generated
        assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
        for token, top in zip(lp.tokens[1:], lp.top_logprobs[1:], strict=True):
            assert token in top  # what is_greedy compares against


async def test_completions_logprobs_and_stream(base_url: str, model: str) -> None:
    client = _async(base_url)
    resp = await client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=4, logprobs=2, temperature=0
    )
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == resp.usage.completion_tokens and all(x is not None for x in lp.token_logprobs)
    assert "".join(lp.tokens) == resp.choices[0].text
    stream = await client.completions.create(
        model=model,
        prompt="Once upon a time",
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == resp.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 4


async def test_completions_prompt_list(base_url: str, model: str) -> None:
    resp = await _async(base_url).completions.create(
        model=model, prompt=["One", "Two"], max_tokens=3, n=2, temperature=0
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert resp.usage.completion_tokens > 0


async def test_models(base_url: str, model: str) -> None:
    client = _async(base_url)
    models = [m async for m in client.models.list()]
    assert model in {m.id for m in models}
    assert all(m.object == "model" and m.owned_by == "genai" and isinstance(m.created, int) for m in models)
    one = await client.models.retrieve(model)
    assert one.id == model
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve(MISSING_MODEL)


async def test_sdk_errors(base_url: str, model: str) -> None:
    client = _async(base_url)
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model=MISSING_MODEL, messages=USER)
    assert err.value.status_code == 404 and err.value.body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model=MISSING_MODEL, messages=USER, stream=True)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model=model, messages=USER, max_tokens=-1)
    assert err.value.param == "max_tokens"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"n": 1000}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, None),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"functions": []}, "functions"),
    ],
)
async def test_chat_bad_requests(base_url: str, model: str, body: dict, param: str | None) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/chat/completions", json={"model": model, "messages": USER, **body})
    error = _error(r, 400, param)
    assert error["type"] == "invalid_request_error"
    if param is None:
        assert error["param"].startswith("messages[0].content")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, -2]}, "prompt[1]"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"logprobs": 50}, "logprobs"),
        ({"echo": True, "stream": True}, "echo"),
        ({"best_of": 3}, "best_of"),
    ],
)
async def test_completions_bad_requests(base_url: str, model: str, body: dict, param: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/completions", json={"model": model, "prompt": "hi", **body})
    _error(r, 400, param)


# -- the fake: exact texts, proto mapping, scripted failures --------------------------------------


async def test_fake_chat_texts(base_url: str, model: str, fake) -> None:
    client = _async(base_url)
    resp = await client.chat.completions.create(model=model, messages=USER)
    assert resp.choices[0].message.content == REPLY and resp.choices[0].finish_reason == "stop"
    resp = await client.chat.completions.create(model=model, messages=USER, stop="fake")
    assert resp.choices[0].message.content == "Hello! I am a " and resp.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(model=model, messages=USER, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == REPLY


async def test_fake_chat_request_mapping(base_url: str, fake) -> None:
    body = {
        "model": "fake-adapter",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
                    },
                    {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{broken"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 2,
        "stop": "END",
        "seed": -1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"42": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "top_k": -1,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "min_tokens": 2,
        "ignore_eos": True,
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "u1",
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
        "chat_template_kwargs": {"enable_thinking": False},
    }
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/chat/completions", json=body, headers={"x-request-id": "req-map-1"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "chatcmpl-req-map-1" and r.json()["model"] == "fake-model:fake-adapter"
    sent = fake.last("Chat")
    assert sent.request_id == "req-map-1" and sent.model == "fake-adapter"
    assert [m.role for m in sent.messages] == ["system", "user", "assistant", "tool"]
    assert sent.messages[0].content == "Be brief." and sent.messages[3].tool_call_id == "c1"
    calls = sent.messages[2].tool_calls
    assert json_format.MessageToDict(calls[0].arguments) == {"city": "Paris", "days": 3}
    assert calls[1].unparsed_arguments == "{broken"
    s = sent.sampling
    assert (s.max_new_tokens, s.n, list(s.stop_sequences), s.seed) == (50, 2, ["END"], 2**64 - 1)
    assert s.temperature == pytest.approx(0.5) and s.top_p == pytest.approx(0.9) and s.min_p == pytest.approx(0.05)
    assert s.presence_penalty == pytest.approx(0.5) and s.frequency_penalty == pytest.approx(-0.5)
    assert dict(s.logit_bias) == {42: -100} and s.logprobs and s.top_logprobs == 3
    assert s.HasField("top_k") and s.top_k == 0 and s.repetition_penalty == pytest.approx(1.1)
    assert s.min_new_tokens == 2 and s.ignore_eos
    assert sent.tools[0].name == "get_weather" and sent.tool_choice.mode == pb.TOOL_CHOICE_MODE_AUTO
    assert sent.HasField("parallel_tool_calls") and not sent.parallel_tool_calls
    assert json_format.MessageToDict(sent.constraint.json_schema) == PERSON
    assert json_format.MessageToDict(sent.chat_template_kwargs) == {"enable_thinking": False}


async def test_fake_tool_call_arguments_keep_integers(base_url: str, model: str, fake) -> None:
    resp = await _async(base_url).chat.completions.create(
        model=model, messages=USER, tools=[WEATHER], tool_choice="required"
    )
    call = resp.choices[0].message.tool_calls[0]
    assert call.id == TOOL_CALL_ID and json.loads(call.function.arguments) == {"city": "fake", "days": 1}
    assert '"days": 1' in call.function.arguments


async def test_fake_completions_texts(base_url: str, model: str, fake) -> None:
    client = _async(base_url)
    resp = await client.completions.create(model=model, prompt="The cat sat", max_tokens=0, echo=True, logprobs=1)
    lp = resp.choices[0].logprobs
    assert resp.choices[0].text == "The cat sat" and lp.tokens == ["The", " cat", " sat"]
    assert "".join(lp.tokens) == resp.choices[0].text and lp.text_offset == [0, 3, 7]
    sent = fake.last("Generate")
    assert sent.sampling.echo and sent.sampling.prompt_logprobs == 1 and sent.sampling.top_logprobs == 1
    resp = await client.completions.create(model=model, prompt=[1, 2, 3], max_tokens=2)
    assert list(fake.last("Generate").token_ids.ids) == [1, 2, 3] and resp.choices[0].text == "Hello!"
    resp = await client.completions.create(model=model, prompt="x", max_tokens=16, stop=[" am"])
    assert resp.choices[0].text == "Hello! I" and resp.choices[0].finish_reason == "stop"


async def test_fake_service_validation_is_renamed(base_url: str, model: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/chat/completions", json={"model": model, "messages": USER, "n": 9})
        error = _error(r, 400, "n")
        assert error["message"].startswith("n:") and error["code"] == "invalid_argument"
        r = await http.post(f"{base_url}/v1/completions", json={"model": model, "prompt": "x", "n": 9, "stream": True})
        _error(r, 400, "n")


async def test_fake_overloaded_is_429(base_url: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        for stream in (False, True):
            r = await http.post(
                f"{base_url}/v1/chat/completions", json={"model": OVERLOADED, "messages": USER, "stream": stream}
            )
            assert _error(r, 429)["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        await _async(base_url).completions.create(model=OVERLOADED, prompt="x")


async def test_fake_error_mid_stream(base_url: str, model: str, fake) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": FAIL_PROMPT}], "stream": True}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/chat/completions", json=body)
        assert r.status_code == 200
        data = _events(r.text)
        assert data[-1] == "[DONE]"
        error = json.loads(data[-2])["error"]
        assert set(error) == ENVELOPE_KEYS and error["type"] == "server_error" and error["code"] == "internal"
        assert error["message"] == "the engine failed mid-stream"
        assert json.loads(data[1])["choices"][0]["delta"] == {"content": "Hello"}
        r = await http.post(f"{base_url}/v1/completions", json={"model": model, "prompt": FAIL_PROMPT, "stream": True})
        assert "error" in json.loads(_events(r.text)[-2])
        r = await http.post(f"{base_url}/v1/chat/completions", json={**body, "stream": False})
        assert _error(r, 500)["code"] == "generation_failed"
    stream = await _async(base_url).chat.completions.create(model=model, messages=body["messages"], stream=True)
    with pytest.raises(openai.APIError, match="the engine failed mid-stream"):
        async for _ in stream:
            pass


async def _wait_cancelled(fake, request_id: str) -> None:
    for _ in range(200):
        if request_id in fake.cancelled:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the service never saw {request_id} cancelled: {fake.cancelled}")


async def test_fake_disconnect_cancels_stream(base_url: str, model: str, fake) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": SLOW_PROMPT}], "stream": True}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        async with http.stream(
            "POST", f"{base_url}/v1/chat/completions", json=body, headers={"x-request-id": "gone-1"}
        ) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break
    await _wait_cancelled(fake, "gone-1")


async def test_fake_disconnect_cancels_unary_call(base_url: str, model: str, fake) -> None:
    async with httpx.AsyncClient(timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"{base_url}/v1/completions",
                json={"model": model, "prompt": SLOW_PROMPT},
                headers={"x-request-id": "gone-2"},
            )
    await _wait_cancelled(fake, "gone-2")


async def test_fake_models_exact(base_url: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.get(f"{base_url}/v1/models")
        assert r.json() == {
            "object": "list",
            "data": [
                {
                    "id": "fake-model",
                    "object": "model",
                    "created": 1_700_000_000,
                    "owned_by": "genai",
                    "type": "llm",
                    "root": "fake-model",
                    "parent": None,
                    "max_model_len": 2048,
                },
                {
                    "id": "fake-adapter",
                    "object": "model",
                    "created": 1_700_000_100,
                    "owned_by": "genai",
                    "type": "adapter",
                    "root": "/adapters/fake-adapter",
                    "parent": "fake-model",
                    "max_model_len": 2048,
                },
            ],
        }
        r = await http.get(f"{base_url}/v1/models/fake-model:fake-adapter")
        assert r.json()["id"] == "fake-adapter" and r.json()["parent"] == "fake-model"


async def test_fake_api_keys(inference_target: str, fake) -> None:
    settings = GatewaySettings(targets={"inference": inference_target}, api_keys=("k1",))
    async with serve_gateway(settings) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="fake-model", messages=USER)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)
        resp = await client.chat.completions.create(model="fake-model", messages=USER)
        assert resp.choices[0].message.content == REPLY


async def test_inference_not_configured(absent_client, assert_envelope) -> None:
    r = await absent_client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert_envelope(r, 503, "service_unavailable_error", "backend_not_configured")
    r = await absent_client.get("/v1/models")
    assert_envelope(r, 503, "service_unavailable_error", "backend_not_configured")
