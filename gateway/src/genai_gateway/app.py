"""build_app(settings, backends): the FastAPI app with routers, middleware and error handlers. No globals."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from opentelemetry.sdk.trace import TracerProvider

from genai_gateway import errors, openapi
from genai_gateway.auth import ApiKeys
from genai_gateway.clients import Backends
from genai_gateway.deadlines import Deadlines
from genai_gateway.middleware import GatewayMiddleware, HttpMetrics
from genai_gateway.routes import (
    agent,
    embeddings,
    evaluation,
    finetune,
    health,
    images,
    langgraph,
    lmeval,
    models,
    openai,
    operations,
    responses,
    retrieval,
    tgi,
    tokenizer,
)
from genai_gateway.settings import GatewaySettings
from genai_gateway.tracing import instrument

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
    app.state.deadlines = Deadlines(settings.request_timeout, settings.generation_timeout, settings.seconds_per_input)
    app.state.metrics = HttpMetrics()
    errors.install(app)
    app.include_router(health.router)
    api_keys = Depends(ApiKeys(settings.api_keys))
    app.include_router(tokenizer.router, dependencies=[api_keys])
    app.include_router(openai.router, dependencies=[api_keys])
    app.include_router(models.router, dependencies=[api_keys])
    app.include_router(responses.router, dependencies=[api_keys])
    app.include_router(tgi.router, dependencies=[api_keys])
    app.include_router(embeddings.router, dependencies=[api_keys])
    app.include_router(retrieval.router, dependencies=[api_keys])
    app.include_router(operations.router, dependencies=[api_keys])
    app.include_router(agent.router, dependencies=[api_keys])
    app.include_router(langgraph.router, dependencies=[api_keys])
    app.include_router(evaluation.router, dependencies=[api_keys])
    app.include_router(lmeval.router, dependencies=[api_keys])
    app.include_router(finetune.router, dependencies=[api_keys])
    app.include_router(images.router, dependencies=[api_keys])
    app.add_middleware(GatewayMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes)

    def schema() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.document_errors(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
    instrument(app, tracer_provider)  # outermost
    return app
