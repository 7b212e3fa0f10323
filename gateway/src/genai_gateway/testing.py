"""Test helper: the gateway under uvicorn on a free 127.0.0.1 port, inside the running event loop.

SDK clients (openai, text-generation) need a real HTTP server; ASGI transports cannot serve them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings


class _Uvicorn(uvicorn.Server):
    def capture_signals(self):  # the test process keeps its own signal handlers
        return contextlib.nullcontext()


@contextlib.asynccontextmanager
async def serve_gateway(settings: GatewaySettings, tracer_provider: TracerProvider | None = None
                        ) -> AsyncIterator[str]:
    """Yield the base URL of a gateway built from ``settings`` (its spans go to ``tracer_provider``, by default
    a provider of its own); stop it on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = build_app(settings, tracer_provider=tracer_provider or TracerProvider())
    server = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
