"""What every route does around a gRPC call: name the request, pick the backend's stub, await the call
and give up on it when the HTTP client leaves. Streaming responses are in ``sse``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request

from genai_gateway.deadlines import Deadlines
from genai_gateway.errors import GatewayError, call

logger = logging.getLogger(__name__)

T = TypeVar("T")


def request_id(request: Request) -> str:
    """The id the middleware gave this request (the client's ``x-request-id`` or a new one)."""
    return request.scope["state"]["request_id"]


def deadlines(request: Request) -> Deadlines:
    """The app's deadline policy: ``deadlines(request).generate()`` etc., passed as ``timeout=``."""
    return request.app.state.deadlines


def stub(request: Request, name: str) -> Any:
    """The gRPC stub of backend ``name``; 503 when this gateway has no target for it."""
    return request.app.state.backends.stub(name)


def stub_of_operations(request: Request, name: str) -> Any:
    """The OperationsService stub of backend ``name``; 503 when this gateway has no target for it."""
    return request.app.state.backends.operations(name)


async def unary(
    request: Request,
    grpc_call: Awaitable[T],
    renames: Mapping[str, str] | None = None,
    on_abandon: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """Await a unary gRPC call like ``errors.call``, but cancel it if the HTTP client goes away first."""
    return (await unary_all(request, [grpc_call], [renames], on_abandon))[0]


async def unary_all(
    request: Request,
    grpc_calls: Sequence[Awaitable[T]],
    renames: Sequence[Mapping[str, str] | None],
    on_abandon: Callable[[], Awaitable[Any]] | None = None,
) -> list[T]:
    """Await several unary gRPC calls together; cancel them all if the HTTP client goes away first.

    ``on_abandon`` runs then too (the routes send the Cancel RPC by request id), for a callee that
    lost the call's own cancellation.
    """

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(asyncio.gather(*(call(c, r) for c, r in zip(grpc_calls, renames, strict=True))))
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        abandoned = not work.done()
        if abandoned or work.exception() is not None:
            for c in grpc_calls:
                c.cancel()  # type: ignore[attr-defined]  # a no-op once a call has ended
        if abandoned:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            if on_abandon is not None:
                try:
                    await on_abandon()
                except Exception as exc:  # noqa: BLE001 - best effort: the client is gone either way
                    logger.warning("cancelling abandoned generation failed: %s", exc)
    if abandoned:
        raise GatewayError(499, "the client closed the request", "cancelled_error", "cancelled")
    return work.result()
