"""Server-sent events over gRPC server streams, shared by the OpenAI and TGI routes.

The rules every streaming route follows:

* the gRPC stream is opened and its first message awaited *before* the HTTP response starts, so an
  error up to then (bad request, unknown model, overloaded) is an ordinary HTTP error status;
* once the first byte is sent the status is 200 for good: a later failure (a gRPC error, or the
  stream's final ``genai.type.v1.ErrorDetail``) becomes one error event, never a broken connection;
* when the HTTP client goes away the gRPC call is cancelled at once, so the inference service frees
  the slot instead of generating for nobody (the same for unary calls, through ``calls.unary``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc
from genai.type.v1 import error_pb2
from starlette.responses import StreamingResponse

from genai_gateway.errors import HTTP_FOR_GRPC, SERVER_ERROR, GatewayError, call

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer the stream
END_WAIT_S = 0.5  # how long a stream may take to close after its `complete` message


def data(payload: Any, *, space: bool = True) -> bytes:
    """One SSE event: ``data: {json}`` and a blank line. OpenAI writes a space after the colon, TGI not."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data:{' ' if space else ''}{text}\n\n".encode()


def logprob(value: float) -> float:
    """A float32 logprob as the shortest decimal that keeps its precision (-0.1, not -0.10000000149011612).

    -inf (a token constrained decoding masked out) and NaN are not JSON; OpenAI sends -9999.0 for them.
    """
    return float(f"{value:.8g}") if math.isfinite(value) else -9999.0


def detail_error(detail: error_pb2.ErrorDetail) -> GatewayError:
    """The in-stream ErrorDetail as the GatewayError its gRPC code would have given, via the one table."""
    code = grpc.StatusCode.__members__.get(detail.code.upper())
    status, type_ = HTTP_FOR_GRPC.get(code, SERVER_ERROR) if code else SERVER_ERROR
    return GatewayError(status, detail.message or "generation failed", type_, (detail.code or "internal").lower())


class GrpcStream:
    """A server-streaming call whose messages end with a ``complete`` or an ``error`` event.

    Iterating yields every message up to and including ``complete``; an ``error`` event, a gRPC
    error or an end without ``complete`` raises GatewayError.
    """

    def __init__(self, call_: grpc.aio.UnaryStreamCall, renames: Mapping[str, str] | None = None) -> None:
        self._call = call_
        self._renames = renames
        self._first: Any = None

    async def _read(self) -> Any:
        message = await call(self._call.read(), self._renames, getattr(self._call, "service", None))
        if message is grpc.aio.EOF:
            raise GatewayError(500, "the inference stream ended without a final message", "server_error", "internal")
        if message.WhichOneof("event") == "error":
            raise detail_error(message.error)
        return message

    async def open(self) -> GrpcStream:
        self._first = await self._read()
        return self

    async def __aiter__(self) -> AsyncIterator[Any]:
        message = self._first if self._first is not None else await self._read()
        while True:
            if message.WhichOneof("event") == "complete":
                await self._end()
                yield message
                return
            yield message
            message = await self._read()

    async def _end(self) -> None:
        """After ``complete`` the callee closes the stream at once: read that end (briefly), so the call
        and its span end with the callee's status instead of being cancelled by ``events``."""
        try:
            await asyncio.wait_for(self._call.read(), END_WAIT_S)
        except (TimeoutError, grpc.aio.AioRpcError):
            pass  # events() cancels it

    def cancel(self) -> None:
        """Cancel the call; the server sees CANCELLED and stops generating. A no-op once it ended."""
        self._call.cancel()


async def open_streams(
    calls: Sequence[Callable[[], grpc.aio.UnaryStreamCall]], renames: Sequence[Mapping[str, str]]
) -> list[GrpcStream]:
    """Start every call, then wait for each one's first message; on any error cancel them all."""
    streams = [GrpcStream(make(), r) for make, r in zip(calls, renames, strict=True)]
    try:
        await asyncio.gather(*(s.open() for s in streams))
    except BaseException:
        for s in streams:
            s.cancel()
        raise
    return streams


async def events(
    frames: AsyncIterator[bytes],
    streams: Sequence[GrpcStream],
    error_frame: Callable[[GatewayError], bytes],
    end: bytes = b"",
) -> AsyncIterator[bytes]:
    """Relay ``frames``; turn a failure into one ``error_frame`` and always finish with ``end``.

    Whatever way this stops (done, failed, or closed because the client left) the calls are cancelled.
    """
    try:
        try:
            async for frame in frames:
                yield frame
        except GatewayError as exc:
            yield error_frame(exc)
        except Exception:  # noqa: BLE001 - a bug here must still end the stream with an error event
            logger.exception("streaming response failed")
            yield error_frame(GatewayError(500, "internal error while streaming", "server_error", "internal"))
        if end:
            yield end
    finally:
        for s in streams:
            s.cancel()
        await frames.aclose()


class EventStream(StreamingResponse):
    """``text/event-stream`` that notices a client going away even while no event is due.

    Under ASGI 2.4 Starlette notices a disconnect only at the next write, and a model may be silent
    for seconds (a long prompt, a held-back stop sequence); under 2.3 it listens, but may leave the
    event iterator suspended instead of closed. This always listens, and always closes the iterator
    (whose ``finally`` cancels the gRPC call) the moment the client is gone.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], status_code: int = 200) -> None:  # status: for OpenAPI
        super().__init__(content, status_code=status_code, headers=HEADERS)

    async def __call__(self, scope, receive, send) -> None:
        listener = asyncio.ensure_future(self.listen_for_disconnect(receive))
        writer = asyncio.ensure_future(self.stream_response(send))
        try:
            await asyncio.wait({listener, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listener.cancel()
            writer.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            try:
                await writer
            except (asyncio.CancelledError, OSError):  # stopped because the client left
                pass
            finally:
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
