"""Liveness, readiness and metrics: open routes, never behind API keys."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["health"], route_class=ApiRoute)


class Alive(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    backends: dict[str, str] = Field(description="Each configured backend's gRPC health: SERVING when ready.")
    not_ready: list[str] = Field(description="The backends that are not SERVING (none when ready).")


@router.get("/healthz", response_model=Alive, summary="Liveness: the gateway process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Some backend is not SERVING: `not_ready` names it."}},
    summary="Readiness: 200 when every configured backend is SERVING, else 503",
)
async def readyz(request: Request) -> JSONResponse:
    statuses = await request.app.state.backends.readiness()
    waiting = sorted(name for name, status in statuses.items() if status != "SERVING")
    body = {"status": "not_ready" if waiting else "ready", "backends": statuses, "not_ready": waiting}
    return JSONResponse(body, status_code=503 if waiting else 200)


@router.get("/metrics", summary="Prometheus metrics of the gateway", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
