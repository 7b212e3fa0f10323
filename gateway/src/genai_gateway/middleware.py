"""Pure ASGI middleware: request id, trace id headers, body-size limit and HTTP metrics.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched.
"""

from __future__ import annotations

import logging
import time
import uuid

from genai_core.metrics import LATENCY_BUCKETS
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.responses import Response

from genai_gateway.errors import envelope

logger = logging.getLogger(__name__)




class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genai_http_requests", "HTTP requests by route and status.", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "genai_http_request_duration_seconds", "Time to the response's first byte.", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )


class GatewayMiddleware:
    def __init__(self, app, *, metrics: HttpMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        ctx = trace.get_current_span().get_span_context()
        response_started = False

        async def send_with_headers(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                extra = [(b"x-request-id", request_id.encode("latin-1"))]
                if ctx.is_valid:
                    trace_id = f"{ctx.trace_id:032x}"
                    extra.append((b"x-trace-id", trace_id.encode()))
                    # W3C Trace Context level 2 response header: version-trace-span-flags.
                    extra.append(
                        (b"traceresponse", f"00-{trace_id}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode())
                    )
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(scope["method"], route, str(message["status"])).inc()
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        def too_large(size: int) -> Response:
            return envelope(
                413, f"the request body has {size} bytes or more, over the limit of {self.max_body_bytes}",
                "invalid_request_error", "payload_too_large",
            )

        length = headers.get(b"content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            await too_large(int(length))(scope, receive, send_with_headers)
            return

        app_receive = receive
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # A chunked body has no Content-Length: read it here (bounded) and replay it to the app.
            messages, size = [], 0
            while True:
                message = await receive()
                messages.append(message)
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    await too_large(size)(scope, receive, send_with_headers)
                    return
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
            replay = iter(messages)

            async def app_receive():
                return next(replay, None) or await receive()

        try:
            await self.app(scope, app_receive, send_with_headers)
        except Exception:
            if response_started:
                raise
            logger.exception("unhandled gateway error")
            trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else "unknown"
            await envelope(
                500, f"internal error; report trace id {trace_id} to the operator", "server_error", "internal"
            )(scope, receive, send_with_headers)
