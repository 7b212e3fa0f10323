"""A stream the real scheduler ends with ``FINISH_REASON_ERROR`` in its final message (the engine failed a row;
no in-band ErrorDetail): every streaming route turns it into its error event, after the text already sent,
and ends cleanly (issue 14: only the fake's ErrorDetail form was tested)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.tests.fake_inference import ERROR_FINISH_PROMPT, MODEL, TIMEOUT

pytest_plugins = ["gateway.tests.fake_inference"]


def _data(text: str) -> list[str]:
    return [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]


async def test_chat_stream(base_url, fake):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ERROR_FINISH_PROMPT}], "stream": True}
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/chat/completions", json=body)
    events = _data(r.text)
    assert r.status_code == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in chunks)  # text came first
    assert chunks[-1]["error"]["code"] == "generation_failed" and chunks[-1]["error"]["type"] == "server_error"
    assert not any(c.get("choices") and c["choices"][0]["finish_reason"] for c in chunks)  # never a clean finish


async def test_completions_stream_through_the_sdk(base_url):
    sdk = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)
    stream = await sdk.completions.create(model=MODEL, prompt=ERROR_FINISH_PROMPT, stream=True)
    with pytest.raises(openai.APIError, match="generation failed"):
        async for _ in stream:
            pass


async def test_tgi_stream(base_url):
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/generate_stream", json={"inputs": ERROR_FINISH_PROMPT})
    last = json.loads(_data(r.text)[-1])
    assert last["error_type"] == "generation" and "failed" in last["error"]


async def test_responses_stream(base_url):
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        r = await http.post(f"{base_url}/v1/responses", json={"model": MODEL, "input": ERROR_FINISH_PROMPT,
                                                              "stream": True})
    last = json.loads(_data(r.text)[-1])
    assert last["type"] == "response.failed" and last["response"]["error"]["message"]
