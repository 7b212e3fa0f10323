"""Test helpers: run services in-process on a free port and talk to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_core.channels import create_channel
from genai_core.server import GrpcServer, ServiceSpec
from genai_core.settings import ServerSettings


@asynccontextmanager
async def running_server(
    services: Sequence[ServiceSpec],
    ready: Callable[[], Awaitable[None]] | None = None,
    settings: ServerSettings | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[tuple[GrpcServer, grpc.aio.Channel]]:
    """Start ``services`` on 127.0.0.1:0 with the production interceptors; yield server and channel.

    The server turns SERVING after ``ready`` (if given) completes, as in production.
    """
    server = GrpcServer(
        settings or ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5),
        services,
        tracer_provider=tracer_provider,
    )
    port = await server.start()
    if ready is not None:
        await ready()
    await server.set_serving()
    channel = create_channel(f"127.0.0.1:{port}", tracer_provider=tracer_provider)
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop(0.5)
