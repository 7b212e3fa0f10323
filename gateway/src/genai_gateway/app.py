"""build_app(settings, backends): the FastAPI app with routers, middleware and error handlers. No globals."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from genai_gateway import errors
from genai_gateway.auth import ApiKeys
from genai_gateway.clients import Backends
from genai_gateway.middleware import GatewayMiddleware, HttpMetrics
from genai_gateway.routes import embeddings, finetune, health, images, openai, retrieval, tgi, tokenizer
from genai_gateway.settings import GatewaySettings

DESCRIPTION = """One HTTP front door for the GenAI platform's gRPC services.

Errors use one envelope: `{"error": {"message", "type", "code", "param", "trace_id"}}`.
Every response carries `x-request-id` and `x-trace-id`; send a W3C `traceparent` to join your trace.
"""


def build_app(settings: GatewaySettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # gRPC aio channels bind to the running loop, so they are made here, not before uvicorn starts.
        app.state.backends = Backends(
            settings.targets, timeout=settings.request_timeout, tracer_provider=tracer_provider
        )
        yield
        await app.state.backends.close()

    app = FastAPI(title="GenAI gateway", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = HttpMetrics()
    errors.install(app)
    app.include_router(health.router)
    api_keys = Depends(ApiKeys(settings.api_keys))
    app.include_router(tokenizer.router, dependencies=[api_keys])
    app.include_router(openai.router, dependencies=[api_keys])
    app.include_router(tgi.router, dependencies=[api_keys])
    app.include_router(embeddings.router, dependencies=[api_keys])
    app.include_router(retrieval.router, dependencies=[api_keys])
    app.include_router(finetune.router, dependencies=[api_keys])
    app.include_router(images.router, dependencies=[api_keys])
    app.add_middleware(GatewayMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, excluded_urls="healthz,readyz,metrics")
    return app
