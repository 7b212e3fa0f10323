"""Tracing of HTTP requests: one server span per request, named for the gateway and its route.

* ``gateway POST /v1/rag/answer`` is the root of a request's trace (or continues the caller's
  ``traceparent``), marked as an OpenInference CHAIN with ``service.name=gateway``;
* no per-chunk ``http send``/``http receive`` spans (a streamed answer made a dozen), no spans for
  probes and scrapes (``genai_core.telemetry.traced_http``);
* every request starts from an empty context. uvicorn resumes reading a connection (after a large body
  paused it) from inside the request that read it, so the connection's next requests inherited that
  request's span: the same trace id on every later request of a keep-alive connection. The app's
  ``receive``/``send`` also run outside the request's context, so the server never captures it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from genai_core.spans import GenAISpan, Operation
from genai_core.telemetry import traced_http
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from starlette.routing import Match

SERVICE = "gateway"


class _Untraced:
    """The ``excluded_urls`` the OpenTelemetry middleware asks, answered by the platform's one policy."""

    def url_disabled(self, url: str) -> bool:
        return not traced_http(urlsplit(url).path)


def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``gateway <METHOD> <route template>`` and ``http.route``; just ``gateway <METHOD>`` when no route matches
    (a raw path in a span name would make one name per URL)."""
    method = scope.get("method", "HTTP")
    route = None
    # Routes of included routers are nested: iter_route_contexts yields each one with its full path.
    for candidate in iter_route_contexts(scope["app"].routes):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            route = getattr(candidate, "path", None)
            break
    attributes = {"http.route": route} if route else {}
    return " ".join(p for p in (SERVICE, method, route) if p), attributes


def _annotate(span, scope: dict[str, Any]) -> None:
    GenAISpan(span, Operation.STEP).attributes(**{"service.name": SERVICE})


class FreshContext:
    """Outermost middleware: the request runs in an empty OpenTelemetry context, and the server's
    ``receive``/``send`` run in one too (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def clean_receive():
            token = otel_context.attach(otel_context.Context())
            try:
                return await receive()
            finally:
                otel_context.detach(token)

        async def clean_send(message) -> None:
            token = otel_context.attach(otel_context.Context())
            try:
                await send(message)
            finally:
                otel_context.detach(token)

        token = otel_context.attach(otel_context.Context())
        try:
            await self.app(scope, clean_receive, clean_send)
        finally:
            otel_context.detach(token)


def instrument(app: FastAPI, tracer_provider: TracerProvider | None = None) -> None:
    """Add the tracing middleware; call after every other ``add_middleware`` (it must be outermost)."""
    app.add_middleware(
        OpenTelemetryMiddleware, excluded_urls=_Untraced(), default_span_details=span_details,
        server_request_hook=_annotate, tracer_provider=tracer_provider, exclude_spans=["receive", "send"],
    )
    app.add_middleware(FreshContext)
