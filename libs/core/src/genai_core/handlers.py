"""What every server interceptor of the suite does with a handler: rebuild it around wrapped behaviours, and
tell the status code a finished call ended with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

Wrap = Callable[[Callable], Callable]

_KINDS = (
    ("unary_unary", False, grpc.unary_unary_rpc_method_handler),
    ("unary_stream", True, grpc.unary_stream_rpc_method_handler),
    ("stream_unary", False, grpc.stream_unary_rpc_method_handler),
    ("stream_stream", True, grpc.stream_stream_rpc_method_handler),
)


def rewrap(handler: grpc.RpcMethodHandler, unary: Wrap, stream: Wrap) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped by ``unary`` (a single response) or ``stream`` (a response
    stream), keeping its (de)serializers."""
    for attr, streams, build in _KINDS:
        behavior = getattr(handler, attr)
        if behavior:
            return build((stream if streams else unary)(behavior), request_deserializer=handler.request_deserializer,
                         response_serializer=handler.response_serializer)
    return handler


def final_code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> grpc.StatusCode:
    """The code a call ended with: the one set on ``context`` (an abort), else OK, CANCELLED when it was
    cancelled or its stream closed under it, UNKNOWN for any other exception."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failed is None:
        return grpc.StatusCode.OK
    if isinstance(failed, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
