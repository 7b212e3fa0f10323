"""Client channels to other services: tracing, a default deadline, retries of UNAVAILABLE, keepalive."""

from __future__ import annotations

import json
import math

import grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_core.tracing import client_interceptors


def _service_config(max_attempts: int) -> str:
    # Transparent retry of UNAVAILABLE only: it is the one code that means "nothing ran".
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


# Pass as ``timeout=`` for a call that must have no deadline: work whose length the caller cannot bound (token
# generation, like vLLM and TGI) and that it cancels itself when its own client leaves. ``None`` gets the default.
NO_DEADLINE = math.inf


class _DefaultDeadline:
    """Gives every call a deadline unless the caller set one (``NO_DEADLINE``: none), so no call hangs forever
    by accident.

    One subclass per call kind: grpc.aio files an interceptor under the first kind it is an instance of, so an
    interceptor of several kinds silently intercepts only unary calls (streams had no deadline at all).
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if details.timeout is not None and details.timeout != NO_DEADLINE:
            return details
        timeout = None if details.timeout == NO_DEADLINE else self._seconds
        return grpc.aio.ClientCallDetails(
            details.method, timeout, details.metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnaryDeadline(_DefaultDeadline, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamDeadline(_DefaultDeadline, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryDeadline(_DefaultDeadline, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamDeadline(_DefaultDeadline, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def create_channel(
    target: str,
    *,
    default_timeout: float = 30.0,
    max_message_bytes: int = 16 * 1024 * 1024,
    max_attempts: int = 3,
    tracer_provider: TracerProvider | None = None,
) -> grpc.aio.Channel:
    """An insecure aio channel to ``target`` (host:port) with the platform's client defaults."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _service_config(max_attempts)),
    ]
    interceptors = [
        *client_interceptors(target, tracer_provider),
        *(kind(default_timeout) for kind in (_UnaryUnaryDeadline, _UnaryStreamDeadline, _StreamUnaryDeadline,
                                             _StreamStreamDeadline)),
    ]
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
