"""API keys guard every /v1 route: one case per operation of the OpenAPI schema, so a route added later is
covered without editing this file (issue 14: keys were tested on tokenizer routes only)."""

from __future__ import annotations

import re

import pytest
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings

KEYS = ("k1", "k2")
OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}  # never behind keys


def _operations() -> list[tuple[str, str]]:
    schema = build_app(GatewaySettings(targets={})).openapi()
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item
            if path not in OPEN]


OPERATIONS = _operations()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", path)  # any value; the key is checked before the route looks at it


def test_the_table_covers_every_api_route():
    paths = {p for _, p in OPERATIONS}
    assert {"/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/collections", "/generate",
            "/v1/operations/{operation_id}"} <= paths


@pytest.fixture(scope="module")
async def keyed(tokenizer_port):
    import httpx
    from opentelemetry.sdk.trace import TracerProvider

    # No backend but the tokenizer: a request that gets past the key check fails later, never with 401.
    app = build_app(GatewaySettings(targets={"tokenizer": f"127.0.0.1:{tokenizer_port}"}, api_keys=KEYS),
                    tracer_provider=TracerProvider())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            yield client


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_every_route_needs_a_key(keyed, method, path):
    url = _concrete(path)
    missing = await keyed.request(method, url, json={})
    wrong = await keyed.request(method, url, json={}, headers={"Authorization": "Bearer nope"})
    for r in (missing, wrong):
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    good = await keyed.request(method, url, json={}, headers={"Authorization": "Bearer k2"})
    assert good.status_code != 401, (method, path, good.text)


async def test_open_routes_stay_open(keyed):
    for path in ("/healthz", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200
