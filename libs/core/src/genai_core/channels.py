"""Client channels to other services: tracing, a default deadline, retries of UNAVAILABLE, keepalive."""

from __future__ import annotations

import json

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


class _DefaultDeadline(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
):
    """Gives every call a deadline unless the caller set one, so no call can hang forever."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if details.timeout is not None:
            return details
        return grpc.aio.ClientCallDetails(
            details.method, self._seconds, details.metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


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
        _DefaultDeadline(default_timeout),
    ]
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
