"""Request ids, trace headers, API keys, health, readiness, metrics and the OpenAPI schema."""

from __future__ import annotations

import re

import httpx
import pytest
from genai_core.testing import running_server
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from genai_tokenizer.registry import TokenizerRegistry
from genai_tokenizer.servicer import service_spec
from genai_tokenizer.settings import TokenizerSettings
from opentelemetry.sdk.trace import TracerProvider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
HEX32 = re.compile(r"^[0-9a-f]{32}$")

# -- request id and trace headers -----------------------------------------------------------


async def test_request_id_generated_and_returned(client):
    r = await client.post("/v1/tokenize", json={"input": "hi"})
    assert HEX32.match(r.headers["x-request-id"])
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_request_ids_differ_between_requests(client):
    a = await client.get("/healthz")
    b = await client.get("/healthz")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/tokenize", {"input": "hi"}),
        ("POST", "/v1/detokenize", {"ids": [19556]}),
        ("POST", "/v1/tokens/count", {"input": "hi"}),
        ("POST", "/v1/chat/template", {"messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/context/pack", {"token_budget": 10}),
        ("GET", "/v1/tokenizers/all-minilm-l6-v2", None),
    ],
)
async def test_incoming_request_id_is_echoed_and_reaches_the_service(client, method, path, body):
    r = await client.request(method, path, json=body, headers={"x-request-id": "req-abc-123"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "req-abc-123"
    if "request_id" in r.json():
        assert r.json()["request_id"] == "req-abc-123"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v1/tokenizers", None),
        ("GET", "/nope", None),
        ("POST", "/v1/tokenize", {"input": []}),
        ("POST", "/v1/tokenize", {"tokenizer": "nope", "input": "x"}),
    ],
)
async def test_every_response_echoes_request_id(client, method, path, body):
    r = await client.request(method, path, json=body, headers={"x-request-id": "rid-1"})
    assert r.headers["x-request-id"] == "rid-1"


async def test_long_request_id_is_truncated(client):
    r = await client.get("/healthz", headers={"x-request-id": "a" * 500})
    assert r.headers["x-request-id"] == "a" * 128


async def test_traceparent_is_joined(client):
    r = await client.post("/v1/tokenize", json={"input": "hi"}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    assert r.headers["x-trace-id"] == TRACE_ID
    parts = r.headers["traceresponse"].split("-")
    assert r.headers["traceresponse"].startswith(f"00-{TRACE_ID}-")
    assert len(parts) == 4 and len(parts[2]) == 16 and parts[2] != PARENT_SPAN  # the gateway's own span
    assert int(parts[3], 16) & 1 == 1  # sampled


async def test_trace_id_in_error_envelope_matches_header(client):
    r = await client.post("/v1/tokenize", json={"input": []}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 400
    assert r.headers["x-trace-id"] == TRACE_ID
    assert r.json()["error"]["trace_id"] == TRACE_ID


async def test_new_trace_without_traceparent(client):
    r = await client.post("/v1/tokenize", json={"input": "hi"})
    trace_id = r.headers["x-trace-id"]
    assert HEX32.match(trace_id) and trace_id != "0" * 32
    assert r.headers["traceresponse"].startswith(f"00-{trace_id}-")


async def test_health_routes_are_not_traced(client):
    r = await client.get("/healthz", headers={"traceparent": TRACEPARENT})
    assert "x-trace-id" not in r.headers  # excluded from instrumentation: no span, no trace headers


async def test_unhandled_error_is_500_envelope_without_details(assert_envelope):
    app = build_app(GatewaySettings(targets={}), tracer_provider=TracerProvider())

    async def boom():
        raise RuntimeError("db password is hunter2")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        r = await c.get("/boom", headers={"traceparent": TRACEPARENT})
    error = assert_envelope(r, 500, "server_error", "internal")
    assert "hunter2" not in r.text
    assert error["trace_id"] == TRACE_ID
    assert TRACE_ID in error["message"]


async def test_unhandled_error_response_has_request_id():
    app = build_app(GatewaySettings(targets={}), tracer_provider=TracerProvider())

    async def boom():
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        r = await c.get("/boom", headers={"x-request-id": "r-500"})
    assert r.status_code == 500
    assert r.headers.get("x-request-id") == "r-500"


# -- API keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer nope"},
        {"authorization": "Bearer k1x"},
        {"authorization": "Bearer "},
        {"authorization": "Basic k1"},
        {"authorization": "k1"},
    ],
    ids=["none", "wrong", "prefix", "empty", "basic", "no-scheme"],
)
async def test_missing_or_wrong_key_is_401(auth_client, assert_envelope, headers):
    r = await auth_client.post("/v1/tokenize", json={"input": "hi"}, headers=headers)
    error = assert_envelope(r, 401, "authentication_error", "invalid_api_key")
    assert "Bearer" in error["message"]
    assert error["param"] is None
    assert r.headers["www-authenticate"].startswith("Bearer")  # RFC 9110 11.6.1: a 401 says how to authenticate


@pytest.mark.parametrize("value", ["Bearer k1", "Bearer k2", "bearer k2", "Bearer   k1  "])
async def test_valid_key_is_accepted(auth_client, value):
    r = await auth_client.post("/v1/tokenize", json={"input": "Hello world"}, headers={"authorization": value})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["ids"] == [19556, 905]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tokenizers"),
        ("GET", "/v1/tokenizers/all-minilm-l6-v2"),
        ("POST", "/v1/tokenizers"),
        ("POST", "/v1/detokenize"),
        ("POST", "/v1/tokens/count"),
        ("POST", "/v1/chat/template"),
        ("POST", "/v1/context/pack"),
    ],
)
async def test_every_tokenizer_route_needs_a_key(auth_client, assert_envelope, method, path):
    r = await auth_client.request(method, path, json={} if method == "POST" else None)
    assert_envelope(r, 401, "authentication_error", "invalid_api_key")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
async def test_open_routes_need_no_key(auth_client, path):
    r = await auth_client.get(path)
    assert r.status_code == 200, r.text


async def test_auth_checked_before_body_validation(auth_client):
    r = await auth_client.post("/v1/tokenize", json={"input": []})
    assert r.status_code == 401  # no key: the caller learns nothing about the body


async def test_api_keys_ignore_empty_entries():
    from genai_gateway.auth import ApiKeys
    from starlette.requests import Request

    def request(auth: str | None) -> Request:
        headers = [(b"authorization", auth.encode())] if auth is not None else []
        return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})

    await ApiKeys(("", ""))(request(None))  # only empty keys: open
    await ApiKeys(())(request("Bearer whatever"))
    keys = ApiKeys(("", "k"))
    await keys(request("Bearer k"))
    from genai_gateway.errors import GatewayError

    with pytest.raises(GatewayError) as info:
        await keys(request("Bearer "))  # an empty token never matches the ignored empty key
    assert info.value.status == 401


# -- health, readiness, metrics, schema -----------------------------------------------------


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_ready(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "backends": {"tokenizer": "SERVING"}, "not_ready": []}


async def test_readyz_backend_down_is_503(down_client):
    r = await down_client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["not_ready"] == ["tokenizer"]
    assert body["backends"]["tokenizer"] != "SERVING"


async def test_readyz_with_no_backends_is_ready(absent_client):
    r = await absent_client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "backends": {}, "not_ready": []}


async def test_healthz_ok_when_backend_down(down_client):
    r = await down_client.get("/healthz")
    assert r.status_code == 200


async def test_metrics_count_requests_by_route_template(client):
    await client.post("/v1/tokenize", json={"input": "hi"})
    await client.get("/v1/tokenizers/all-minilm-l6-v2")
    await client.get("/v1/definitely-not-a-route")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert re.search(r'genai_http_requests_total\{method="POST",route="/v1/tokenize",status="200"\} [1-9]', text)
    # Path parameters stay templated, so ids never become label values.
    assert 'route="/v1/tokenizers/{tokenizer_id}"' in text
    assert "all-minilm-l6-v2" not in text
    assert 'route="unmatched",status="404"' in text
    assert "genai_http_request_duration_seconds_bucket" in text


async def test_openapi_lists_tokenizer_paths(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/tokenize", "post"),
        ("/v1/detokenize", "post"),
        ("/v1/tokens/count", "post"),
        ("/v1/chat/template", "post"),
        ("/v1/context/pack", "post"),
        ("/v1/tokenizers", "get"),
        ("/v1/tokenizers", "post"),
        ("/v1/tokenizers/{tokenizer_id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from the schema"
    assert "/metrics" not in paths
    assert "201" in paths["/v1/tokenizers"]["post"]["responses"]
    assert schema["info"]["title"] == "GenAI gateway"


# -- a backend that is up but still loading -------------------------------------------------


async def test_backend_still_loading_is_503_unavailable(tmp_path, assert_envelope):
    unloaded = TokenizerRegistry(TokenizerSettings(data_dir=tmp_path, cache_dir=tmp_path / "cache"))
    async with running_server([service_spec(unloaded)]) as (server, _):
        app = build_app(GatewaySettings(targets={"tokenizer": f"127.0.0.1:{server.port}"}), TracerProvider())
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            r = await c.post("/v1/tokenize", json={"input": "hi"})
            listed = await c.get("/v1/tokenizers")
    error = assert_envelope(r, 503, "service_unavailable_error", "unavailable")
    assert "still loading" in error["message"]
    assert_envelope(listed, 503, "service_unavailable_error", "unavailable")
