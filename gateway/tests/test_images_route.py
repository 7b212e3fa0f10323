"""POST /v1/images/generations: what the gateway itself checks (OpenAI's body shape, b64_json only, square
sizes), and the 503 when no inference service is configured. The images themselves are drawn in the
end-to-end test (tests/e2e/test_lab_e2e.py) with the openai SDK against a trained diffusion model."""

from __future__ import annotations


async def test_url_responses_are_refused(client, assert_envelope):
    reply = await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "response_format": "url"})
    error = assert_envelope(reply, 400, "invalid_request_error")
    assert error["param"] == "response_format" and "b64_json" in error["message"]


async def test_sizes_must_be_square(client, assert_envelope):
    reply = await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "size": "16x8"})
    assert assert_envelope(reply, 400)["param"] == "size"
    bad = await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "size": "big"})
    assert bad.status_code in (400, 422)


async def test_unknown_fields_and_counts_are_refused(client):
    assert (await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "n": 0})).status_code in (
        400, 422)
    assert (await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "colour": 1})).status_code in (
        400, 422)


async def test_without_an_inference_service_it_is_unavailable(client, assert_envelope):
    reply = await client.post("/v1/images/generations", json={"model": "m", "prompt": "3", "seed": 1})
    assert_envelope(reply, 503)
