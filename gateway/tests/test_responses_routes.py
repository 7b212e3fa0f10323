"""/v1/responses with the official openai SDK (``client.responses``): text and message input, instructions,
tools and function-call outputs, structured output, streaming events as the SDK parses them, and
previous_response_id over stored responses. Against the scripted fake, whose requests are recorded."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from genai.inference.v1 import inference_service_pb2 as pb
from genai_core.structs import struct_to_dict

from gateway.tests.fake_inference import FAIL_PROMPT, MODEL, REPLY, TIMEOUT, TOOL_CALL_ID

pytest_plugins = ["gateway.tests.fake_inference"]

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture
def sdk(base_url) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


def _roles(request: pb.ChatRequest) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in request.messages]


async def test_text_input(sdk, fake):
    r = await sdk.responses.create(model=MODEL, input="Say hello.")
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text == REPLY and r.model == MODEL
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    assert r.usage.input_tokens > 0 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert _roles(fake.last("Chat")) == [("user", "Say hello.")]


async def test_message_input_with_instructions(sdk, fake):
    await sdk.responses.create(
        model=MODEL, instructions="Answer briefly.",
        input=[{"role": "user", "content": "Hi"},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello",
                                                                     "annotations": []}]},
               {"role": "user", "content": [{"type": "input_text", "text": "And "}, {"type": "input_text",
                                                                                      "text": "again?"}]}],
        temperature=0, max_output_tokens=64,
    )
    sent = fake.last("Chat")
    assert _roles(sent) == [("system", "Answer briefly."), ("user", "Hi"), ("assistant", "Hello"),
                            ("user", "And again?")]
    assert sent.sampling.max_new_tokens == 64 and sent.sampling.temperature == 0


async def test_tools_then_function_call_output(sdk, fake):
    first = await sdk.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id == TOOL_CALL_ID and "city" in json.loads(call.arguments)
    assert fake.last("Chat").tool_choice.mode == pb.TOOL_CHOICE_MODE_REQUIRED
    second = await sdk.responses.create(
        model=MODEL, tools=[WEATHER],
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 21}'}],
    )
    assert second.output_text == REPLY
    sent = fake.last("Chat")
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[1].tool_calls[0].id == call.call_id and sent.messages[2].tool_call_id == call.call_id
    assert sent.messages[2].content == '{"celsius": 21}'


async def test_named_tool_choice(sdk, fake):
    r = await sdk.responses.create(model=MODEL, input="x", tools=[WEATHER],
                                   tool_choice={"type": "function", "name": "get_weather"})
    assert r.output[-1].type == "function_call" and fake.last("Chat").tool_choice.function_name == "get_weather"


async def test_structured_output(sdk, fake):
    r = await sdk.responses.create(model=MODEL, input="Invent a person.",
                                   text={"format": {"type": "json_schema", "name": "person", "schema": PERSON}})
    assert set(json.loads(r.output_text)) == {"name", "age"}
    assert struct_to_dict(fake.last("Chat").constraint.json_schema) == PERSON
    assert r.text.format.type == "json_schema"


async def test_previous_response_id_continues_the_stored_conversation(sdk, fake):
    first = await sdk.responses.create(model=MODEL, input="My name is Ada.", instructions="Be kind.")
    second = await sdk.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    # The stored input and output come first; the first response's instructions do not carry over.
    assert _roles(fake.last("Chat")) == [("user", "My name is Ada."), ("assistant", REPLY),
                                         ("user", "What is my name?")]
    fetched = await sdk.responses.retrieve(second.id)
    assert fetched.id == second.id and fetched.output_text == REPLY
    items = await sdk.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my name?"]
    deleted = await sdk.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.responses.create(model=MODEL, input="again", previous_response_id=first.id)
    assert info.value.body["param"] == "previous_response_id"


async def test_store_false_keeps_nothing(sdk):
    r = await sdk.responses.create(model=MODEL, input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(r.id)


async def test_streamed_events_as_the_sdk_parses_them(sdk):
    stream = await sdk.responses.create(model=MODEL, input="Say hello.", stream=True)
    events = [e async for e in stream]
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    assert events[-1].response.output_text == REPLY and events[-1].response.usage.output_tokens > 0
    async with sdk.responses.stream(model=MODEL, input="Say hello.") as helper:  # the SDK's accumulating helper
        final = await helper.get_final_response()
    assert final.output_text == REPLY


async def test_streamed_function_call(sdk):
    stream = await sdk.responses.create(model=MODEL, input="Weather?", tools=[WEATHER], tool_choice="required",
                                        stream=True)
    events = [e async for e in stream]
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["function_call"]
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(arguments) == json.loads(done.arguments) and "city" in json.loads(arguments)
    assert events[-1].type == "response.completed" and events[-1].response.output[0].call_id == TOOL_CALL_ID


async def test_token_limit_is_incomplete(sdk):
    r = await sdk.responses.create(model=MODEL, input="Say hello.", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


async def test_a_failure_mid_stream_is_response_failed(sdk):
    stream = await sdk.responses.create(model=MODEL, input=FAIL_PROMPT, stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.failed" and events[-1].response.error.message


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "tools": [{**WEATHER, "name": "no spaces"}]}, "tools[0].name"),
    ({"input": [{"type": "input_image", "image_url": "x"}]}, "input[0]"),
    ({"input": "x", "max_output_tokens": 100_000}, "max_output_tokens"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
])
async def test_bad_requests_name_the_field(base_url, body, param):
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/responses", json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith(param), r.json()
