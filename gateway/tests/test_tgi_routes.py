"""TGI-compatible routes, checked with Hugging Face's `text-generation` client (Client, AsyncClient) and raw HTTP.

As in test_openai_routes.py: conformance tests take ``base_url`` and ``model`` and also run against
the real service (GENAI_TEST_INFERENCE_TARGET); tests taking ``fake`` assert the scripted texts,
the proto mapping and scripted failures. The TGI client posts to its base URL itself (POST /).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from genai_gateway.settings import GatewaySettings
from google.protobuf import json_format
from text_generation import AsyncClient, Client
from text_generation.errors import GenerationError, OverloadedError, ValidationError, parse_error
from text_generation.types import Grammar, GrammarType

from gateway.tests.fake_inference import (
    ADAPTER,
    FAIL_PROMPT,
    MISSING_MODEL,
    OVERLOADED,
    REPLY,
    SLOW_PROMPT,
    TIMEOUT,
    serve_gateway,
)

# The fake service and the gateway in front of it: base_url, model, fake, inference_target.
pytest_plugins = ["gateway.tests.fake_inference"]

PROMPT = "The quick brown fox"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def _tgi_events(body: str) -> list[dict]:
    """TGI's framing: 'data:<json>' (no space) and a blank line per event, and no [DONE]."""
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(e.startswith("data:{") and "\n" not in e for e in events), events
    return [json.loads(e[len("data:") :]) for e in events]


def _tgi_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    return body["error"]


# -- conformance: any correct inference service ---------------------------------------------------


async def test_client_generate_details(base_url: str) -> None:
    def run():
        return Client(base_url, timeout=TIMEOUT).generate(
            PROMPT, max_new_tokens=5, decoder_input_details=True, top_n_tokens=2
        )

    resp = await asyncio.to_thread(run)
    d = resp.details
    assert resp.generated_text and d.finish_reason.value in ("length", "eos_token", "stop_sequence")
    assert 0 < d.generated_tokens <= 5 and len(d.tokens) == d.generated_tokens
    assert "".join(t.text for t in d.tokens) == resp.generated_text
    assert all(t.logprob is not None and t.logprob <= 0 for t in d.tokens)
    assert d.prefill and d.prefill[0].logprob is None and all(t.logprob is not None for t in d.prefill[1:])
    assert len(d.top_tokens) == len(d.tokens) and all(len(top) == 2 for top in d.top_tokens)
    assert d.seed is None  # greedy


async def test_client_generate_length_and_full_text(base_url: str) -> None:
    client = AsyncClient(base_url, timeout=TIMEOUT)
    resp = await client.generate(PROMPT, max_new_tokens=2)
    assert resp.details.finish_reason.value == "length" and resp.details.generated_tokens == 2
    full = await client.generate(PROMPT, max_new_tokens=2, return_full_text=True)
    assert full.generated_text == PROMPT + resp.generated_text


async def test_client_generate_stream_sync(base_url: str) -> None:
    def run():
        return list(Client(base_url, timeout=TIMEOUT).generate_stream(PROMPT, max_new_tokens=6))

    responses = await asyncio.to_thread(run)
    *body, last = responses
    assert all(r.details is None and r.generated_text is None for r in body)
    assert last.details is not None and last.details.generated_tokens == len(responses) <= 6
    assert "".join(r.token.text for r in responses) == last.generated_text


async def test_async_client_generate_stream_sampling(base_url: str) -> None:
    client = AsyncClient(base_url, timeout=TIMEOUT)
    responses = [
        r async for r in client.generate_stream(PROMPT, max_new_tokens=4, do_sample=True, seed=11, top_n_tokens=2)
    ]
    last = responses[-1]
    assert last.details.seed == 11 and last.details.finish_reason.value in ("length", "eos_token", "stop_sequence")
    assert all(len(r.top_tokens) == 2 for r in responses)
    again = await client.generate(PROMPT, max_new_tokens=4, do_sample=True, seed=11)
    assert again.generated_text == last.generated_text and again.details.seed == 11


async def test_client_grammar_json(base_url: str) -> None:
    resp = await AsyncClient(base_url, timeout=TIMEOUT).generate(
        "Invent a person as JSON:", max_new_tokens=128, grammar=Grammar(type=GrammarType.Json, value=PERSON)
    )
    person = json.loads(resp.generated_text)
    # The schema requires name and age and allows more properties (no additionalProperties: false).
    assert {"name", "age"} <= set(person) and isinstance(person["name"], str) and isinstance(person["age"], int)


async def test_client_validation_errors(base_url: str) -> None:
    client = AsyncClient(base_url, timeout=TIMEOUT)
    with pytest.raises(ValidationError, match="best_of"):
        await client.generate(PROMPT, do_sample=True, best_of=2)
    with pytest.raises(ValidationError, match="typical_p"):
        await client.generate(PROMPT, typical_p=0.5)
    with pytest.raises(ValidationError, match="truncate"):
        await asyncio.to_thread(lambda: list(Client(base_url).generate_stream(PROMPT, truncate=10)))


async def test_routes_and_wire_format(base_url: str) -> None:
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True}}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/generate", json=body)
        assert r.status_code == 200 and set(r.json()) == {"generated_text", "details"}
        details = r.json()["details"]
        assert set(details) == {"finish_reason", "generated_tokens", "seed", "prefill", "tokens"}
        assert set(details["tokens"][0]) == {"id", "text", "logprob", "special"}
        r = await http.post(f"{base_url}/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3}})
        assert set(r.json()) == {"generated_text"}
        r = await http.post(f"{base_url}/", json=body)
        assert isinstance(r.json(), list) and len(r.json()) == 1
        for url, extra in ((f"{base_url}/generate_stream", {}), (f"{base_url}/", {"stream": True})):
            r = await http.post(url, json={**body, **extra})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = _tgi_events(r.text)
            assert [e["index"] for e in events] == list(range(1, len(events) + 1))
            for e in events[:-1]:
                assert set(e) == {"index", "token", "generated_text", "details"}
                assert e["generated_text"] is None and e["details"] is None
                assert set(e["token"]) == {"id", "text", "logprob", "special"}
            assert set(events[-1]["details"]) >= {"finish_reason", "generated_tokens", "seed"}
            assert events[-1]["generated_text"] == "".join(e["token"]["text"] for e in events)


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/generate", {"inputs": ""}, "inputs"),
        ("/generate", {"parameters": {}}, "inputs"),
        ("/generate", {"inputs": "x", "parameters": {"temperature": 0}}, "parameters.temperature"),
        ("/generate", {"inputs": "x", "parameters": {"best_of": 2}}, "parameters.best_of"),
        ("/generate", {"inputs": "x", "parameters": {"watermark": True}}, "parameters.watermark"),
        (
            "/generate",
            {"inputs": "x", "parameters": {"grammar": {"type": "json", "value": "{nope"}}},
            "parameters.grammar.value",
        ),
        ("/generate_stream", {"inputs": "x", "parameters": {"max_new_tokens": -1}}, "parameters.max_new_tokens"),
        ("/", {"inputs": "x", "stream": True, "parameters": {"typical_p": 0.5}}, "parameters.typical_p"),
    ],
)
async def test_validation_is_422(base_url: str, path: str, body: dict, needle: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}{path}", json=body)
    message = _tgi_error(r, 422, "validation")
    assert message.startswith(needle), message
    assert isinstance(parse_error(r.status_code, r.json()), ValidationError)


async def test_unknown_adapter_is_404(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/generate", json={"inputs": "x", "parameters": {"adapter_id": MISSING_MODEL}})
    _tgi_error(r, 404, "not_found")


# -- the fake: exact texts, proto mapping, scripted failures --------------------------------------


async def test_fake_texts_and_stop(base_url: str, fake) -> None:
    client = AsyncClient(base_url, timeout=TIMEOUT)
    resp = await client.generate(PROMPT, max_new_tokens=50)
    assert resp.generated_text == REPLY and resp.details.finish_reason.value == "eos_token"
    resp = await client.generate(PROMPT, max_new_tokens=50, stop_sequences=[" am"])
    assert resp.generated_text == "Hello! I" and resp.details.finish_reason.value == "stop_sequence"
    tokens = [r.token.text async for r in client.generate_stream(PROMPT, max_new_tokens=50)]
    assert tokens == ["Hello", "!", " I", " am", " a", " fake", " model", "."]


async def test_fake_request_mapping(base_url: str, fake) -> None:
    body = {
        "inputs": "hi",
        "parameters": {
            "max_new_tokens": 7,
            "temperature": 0.7,
            "top_k": 5,
            "top_p": 0.9,
            "repetition_penalty": 1.2,
            "frequency_penalty": 0.3,
            "stop": ["x"],
            "adapter_id": ADAPTER,
            "details": True,
            "top_n_tokens": 3,
            "decoder_input_details": True,
            "grammar": {"type": "regex", "value": "[a-z]+"},
        },
    }
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/generate", json=body, headers={"x-request-id": "tgi-map-1"})
        assert r.status_code == 200, r.text
        sent = fake.last("Generate")
        assert sent.request_id == "tgi-map-1" and sent.model == ADAPTER and sent.text == "hi"
        s = sent.sampling
        assert (s.max_new_tokens, s.top_k, list(s.stop_sequences), s.top_logprobs, s.prompt_logprobs) == (
            7,
            5,
            ["x"],
            3,
            0,
        )
        assert s.temperature == pytest.approx(0.7) and s.top_p == pytest.approx(0.9) and s.logprobs
        assert s.repetition_penalty == pytest.approx(1.2) and s.frequency_penalty == pytest.approx(0.3)
        assert s.HasField("seed") and r.json()["details"]["seed"] == s.seed  # sampling: a seed is chosen and reported
        assert sent.constraint.regex == "[a-z]+"
        await http.post(f"{base_url}/generate", json={"inputs": "hi", "parameters": {"do_sample": False}})
        s = fake.last("Generate").sampling
        assert s.HasField("temperature") and s.temperature == 0 and not s.HasField("seed") and not s.logprobs
        await http.post(
            f"{base_url}/generate", json={"inputs": "hi", "parameters": {"grammar": {"type": "json", "value": PERSON}}}
        )
        assert json_format.MessageToDict(fake.last("Generate").constraint.json_schema) == PERSON


async def test_fake_overloaded_is_429(base_url: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        for path in ("/generate", "/generate_stream"):
            r = await http.post(f"{base_url}{path}", json={"inputs": "x", "parameters": {"adapter_id": OVERLOADED}})
            _tgi_error(r, 429, "overloaded")
            assert isinstance(parse_error(r.status_code, r.json()), OverloadedError)


async def test_fake_error_mid_stream(base_url: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/generate_stream", json={"inputs": FAIL_PROMPT})
        events = _tgi_events(r.text)
        assert r.status_code == 200 and events[-1] == {
            "error": "the engine failed mid-stream",
            "error_type": "generation",
        }
        assert [e["token"]["text"] for e in events[:-1]] == ["Hello"]  # the second token was held for the final event
        r = await http.post(f"{base_url}/generate", json={"inputs": FAIL_PROMPT})
        _tgi_error(r, 500, "generation")
    with pytest.raises(GenerationError, match="mid-stream"):
        async for _ in AsyncClient(base_url, timeout=TIMEOUT).generate_stream(FAIL_PROMPT):
            pass


async def test_fake_disconnect_cancels_stream(base_url: str, fake) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        async with http.stream(
            "POST", f"{base_url}/generate_stream", json={"inputs": SLOW_PROMPT}, headers={"x-request-id": "tgi-gone-1"}
        ) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    break
    for _ in range(200):
        if "tgi-gone-1" in fake.cancelled:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(fake.cancelled)


async def test_fake_api_keys_in_tgi_shape(inference_target: str, fake) -> None:
    settings = GatewaySettings(targets={"inference": inference_target}, api_keys=("k1",))
    async with serve_gateway(settings) as url:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            r = await http.post(f"{url}/generate", json={"inputs": "x"})
            _tgi_error(r, 401, "authentication")
        resp = await AsyncClient(url, headers={"Authorization": "Bearer k1"}, timeout=TIMEOUT).generate("x")
        assert resp.generated_text
