"""Issue 14 defect 5: deadlines follow the work. Generation has no deadline (it ends when its client leaves),
work that grows with the request gets time per input, and lookups keep the base deadline."""

from __future__ import annotations

import httpx
import pytest
from genai_core.channels import NO_DEADLINE
from genai_gateway.deadlines import BYTES_PER_CHUNK, Deadlines
from genai_gateway.settings import GatewaySettings

from gateway.tests.fake_inference import PAUSE_PROMPT, PAUSE_SECONDS, SLOW_PROMPT, serve_gateway

pytest_plugins = ["gateway.tests.fake_inference"]

SHORT = 0.5  # a base deadline shorter than the fake's pause
USER = [{"role": "user", "content": f"{PAUSE_PROMPT} hello"}]


def test_policy_per_kind_of_work():
    d = Deadlines(base=30.0, generation=0.0, per_input=0.25)
    assert d.lookup() == 30.0
    assert d.generate() == NO_DEADLINE
    assert d.inputs(1024) == 30.0 + 256.0  # 1,024 embedding inputs: the documented maximum
    assert d.ingest(64, 64 * 100 * BYTES_PER_CHUNK) == d.inputs(64 + 6400)
    assert Deadlines(base=30.0, generation=600.0, per_input=0.25).generate() == 600.0


@pytest.fixture(scope="module")
async def short_gateway(fake, inference_target):
    async with serve_gateway(GatewaySettings(targets={"inference": inference_target}, request_timeout=SHORT)) as url:
        yield url


@pytest.fixture(scope="module")
async def bounded_gateway(fake, inference_target):
    settings = GatewaySettings(targets={"inference": inference_target}, request_timeout=30, generation_timeout=SHORT)
    async with serve_gateway(settings) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": USER}),
        ("/v1/completions", {"prompt": f"{PAUSE_PROMPT} x"}),
        ("/generate", {"inputs": f"{PAUSE_PROMPT} x"}),
    ],
)
async def test_unary_generation_outlives_the_base_deadline(short_gateway, path, body):
    # Was a 504 after GENAI_GATEWAY_REQUEST_TIMEOUT: `POST /generate {"inputs": "0"}` takes ~30 s alone.
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{short_gateway}{path}", json=body)
    assert r.status_code == 200, r.text
    assert PAUSE_SECONDS > SHORT


async def test_streamed_generation_outlives_the_base_deadline(short_gateway):
    body = {"messages": [{"role": "user", "content": SLOW_PROMPT}], "max_tokens": 40, "stream": True}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{short_gateway}/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert '"finish_reason":"length"' in r.text and '"error"' not in r.text  # 40 tokens at 50 ms: 2 s
    assert r.text.endswith("data: [DONE]\n\n")


async def test_a_configured_generation_deadline_still_applies(bounded_gateway):
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{bounded_gateway}/v1/chat/completions", json={"messages": USER})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["message"] == "the inference service did not answer within the deadline"


async def test_lookups_keep_the_base_deadline(short_gateway):
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"{short_gateway}/v1/models")
    assert r.status_code == 200, r.text
