"""Trace ids over a real server and a keep-alive connection (issue 14, defect 3).

uvicorn resumes reading a connection from inside the request whose large body paused it, so without
``genai_gateway.tracing.FreshContext`` every later request on that connection inherited the span of that
request: the same ``x-trace-id`` (also in error envelopes) ever after. This runs the gateway under a real
uvicorn in a thread and talks to it over one HTTP/1.1 connection, as curl ``--next`` does.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # No backends: every /v1 route answers 503, with the trace id in its headers and its envelope.
    app = build_app(GatewaySettings(targets={}), tracer_provider=provider)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (server.started and server.servers):
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port, exporter
    finally:
        server.should_exit = True
        thread.join(10)
        provider.shutdown()


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
    reply = conn.getresponse()
    payload = reply.read()
    return reply.status, reply.getheader("x-trace-id") or "", json.loads(payload) if payload else {}


def test_each_request_on_a_keep_alive_connection_gets_its_own_trace_after_a_large_body(served):
    port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        big = json.dumps({"input": "x" * 1_000_000}).encode()  # ~1 MB: uvicorn pauses reading mid-body
        status, first, _ = _request(conn, "POST", "/v1/tokenize", big)
        assert status == 503 and len(first) == 32
        seen = [first]
        for _ in range(3):
            status, trace_id, body = _request(conn, "GET", "/v1/tokenizers")
            assert status == 503
            assert body["error"]["trace_id"] == trace_id  # the envelope names the same, new trace
            seen.append(trace_id)
        assert len(set(seen)) == len(seen), f"trace ids repeat on one connection: {seen}"
        # A caller's traceparent is still honoured on that connection.
        _, continued, _ = _request(conn, "GET", "/v1/tokenizers",
                                   headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"})
        assert continued == CALLER_TRACE
        _, after, _ = _request(conn, "GET", "/v1/tokenizers")
        assert after not in (CALLER_TRACE, *seen)
    finally:
        conn.close()


def test_every_gateway_span_is_a_root_or_continues_its_caller(served):
    """No request span was made a child of an earlier request's span."""
    port, exporter = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _, posted, _ = _request(conn, "POST", "/v1/tokenize", json.dumps({"input": "y" * 1_000_000}).encode())
        _, listed, _ = _request(conn, "GET", "/v1/tokenizers")
    finally:
        conn.close()

    def ours() -> list:  # spans of other tests' requests may still be ending: keep these two traces only
        return [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") in (posted, listed)]

    deadline = time.monotonic() + 5
    while len(ours()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = ours()
    assert sorted(s.name for s in spans) == ["gateway GET /v1/tokenizers", "gateway POST /v1/tokenize"]
    assert all(s.parent is None for s in spans), [(s.name, s.parent) for s in spans]
    assert spans[0].context.trace_id != spans[1].context.trace_id


def test_span_names_use_the_route_template_and_never_a_raw_path():
    from genai_gateway.tracing import span_details

    app = build_app(GatewaySettings(targets={}), tracer_provider=TracerProvider())

    def name(method: str, path: str) -> tuple[str, dict]:
        return span_details({"type": "http", "method": method, "path": path, "root_path": "", "app": app,
                             "headers": [], "query_string": b""})

    assert name("POST", "/v1/collections/kb/search") == (
        "gateway POST /v1/collections/{collection}/search", {"http.route": "/v1/collections/{collection}/search"})
    assert name("GET", "/no/such/route/4711") == ("gateway GET", {})
