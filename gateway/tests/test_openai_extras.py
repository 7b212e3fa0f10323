"""OpenAI fields beyond the core ones: accepted-and-ignored fields, legacy function calling honoured as tools,
misspellings still rejected, and streamed chunks that name the model that ran (issue 14's conformance gaps).

Against the scripted fake (deterministic answers, recorded requests)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from genai.inference.v1 import inference_service_pb2 as pb

from gateway.tests.fake_inference import MODEL, REPLY, TIMEOUT

pytest_plugins = ["gateway.tests.fake_inference"]

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
IGNORED = {
    "store": True,
    "metadata": {"team": "search"},
    "reasoning_effort": "low",
    "service_tier": "auto",
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "The weather"},
    "verbosity": "low",
    "prompt_cache_key": "tenant-42",
    "safety_identifier": "user-7",
}


def _sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


async def _post(base_url: str, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await http.post(f"{base_url}/v1/chat/completions", json=body)


async def test_known_openai_fields_are_accepted_and_change_nothing(base_url, fake):
    plain = await _sdk(base_url).chat.completions.create(model=MODEL, messages=USER, temperature=0)
    extra = await _sdk(base_url).chat.completions.create(model=MODEL, messages=USER, temperature=0, **IGNORED)
    assert extra.choices[0].message.content == plain.choices[0].message.content == REPLY
    assert fake.last("Chat").sampling == pb.SamplingParams(temperature=0.0, n=1)  # nothing of them reached the model


@pytest.mark.parametrize(("field", "value"), [("stor", True), ("reasoning_efort", "low"), ("functon_call", "auto")])
async def test_misspelt_fields_are_still_rejected(base_url, field, value):
    r = await _post(base_url, {"messages": USER, field: value})
    assert r.status_code == 400 and r.json()["error"]["param"] == field


@pytest.mark.parametrize(("field", "value"), [("modalities", ["text", "audio"]), ("reasoning_effort", "max"),
                                              ("metadata", {"k": 1})])
async def test_values_it_cannot_honour_are_rejected(base_url, field, value):
    r = await _post(base_url, {"messages": USER, field: value})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith(field)


async def test_legacy_functions_are_honoured_as_tools(base_url, fake):
    body = {"model": MODEL, "messages": USER, "functions": [WEATHER], "function_call": {"name": "get_weather"}}
    r = await _post(base_url, body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert "city" in json.loads(choice["message"]["function_call"]["arguments"])
    assert "tool_calls" not in choice["message"]
    sent = fake.last("Chat")
    assert [t.name for t in sent.tools] == ["get_weather"] and sent.tool_choice.function_name == "get_weather"


async def test_legacy_function_history_becomes_tool_messages(base_url, fake):
    messages = [
        *USER,
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": '{"celsius": 21}'},
    ]
    r = await _post(base_url, {"model": MODEL, "messages": messages, "functions": [WEATHER], "function_call": "auto"})
    assert r.status_code == 200, r.text
    sent = fake.last("Chat")
    assistant, tool = sent.messages[1], sent.messages[2]
    assert assistant.tool_calls[0].name == "get_weather" and dict(assistant.tool_calls[0].arguments) == {"city": "Paris"}
    assert tool.role == "tool" and tool.tool_call_id == assistant.tool_calls[0].id and tool.content == '{"celsius": 21}'
    assert sent.tool_choice.mode == pb.TOOL_CHOICE_MODE_AUTO


async def test_legacy_functions_stream_function_call_deltas(base_url):
    body = {"model": MODEL, "messages": USER, "functions": [WEATHER], "function_call": {"name": "get_weather"},
            "stream": True}
    r = await _post(base_url, body)
    chunks = [json.loads(e[6:]) for e in r.text.strip().split("\n\n") if e != "data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert all("tool_calls" not in d for d in deltas)
    calls = [d["function_call"] for d in deltas if "function_call" in d]
    assert calls and calls[0]["name"] == "get_weather"
    assert "city" in json.loads("".join(c.get("arguments", "") for c in calls))
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_streamed_chunks_name_the_model_when_the_request_left_it_empty(base_url, path):
    body = {"messages": USER} if "chat" in path else {"prompt": "Hello"}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}{path}", json={**body, "stream": True})
    chunks = [json.loads(e[6:]) for e in r.text.strip().split("\n\n") if e != "data: [DONE]"]
    assert chunks and {c["model"] for c in chunks} == {MODEL}  # was "" on every chunk
