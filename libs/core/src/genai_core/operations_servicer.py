"""``genai.operations.v1.OperationsService`` over ``genai_core.operations.Operations``: what every service that
starts long-running operations mounts beside its own service.

    >>> # in a service's __main__.py (the composition root)
    >>> # operations = Operations("retrieval")
    >>> # specs = [retrieval_spec, operations_spec(operations, {"retrieval.ingest": Converters(progress, result)})]

``Converters`` turn an operation kind's domain values (progress, result) into the protobuf messages packed
into ``Operation.metadata`` and ``Operation.response``; the service's own servicer uses ``to_proto`` to
return the operation from the method that started it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from genai.operations.v1 import operations_service_pb2 as pb
from genai.operations.v1 import operations_service_pb2_grpc as pb_grpc
from genai.type.v1 import operation_pb2
from google.protobuf import any_pb2, message, timestamp_pb2

from genai_core import rpc
from genai_core.operations import Operation, Operations
from genai_core.server import ServiceSpec

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OperationsService"].full_name


@dataclass(frozen=True)
class Converters:
    """How one kind of operation's progress and result become protobuf messages."""

    progress: Callable[[Any], message.Message]
    result: Callable[[Any], message.Message]


def _packed(value: message.Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(value)
    return out


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def to_proto(op: Operation, converters: Mapping[str, Converters]) -> operation_pb2.Operation:
    """The operation as ``genai.type.v1.Operation``, its progress and result packed by its kind's converters."""
    convert = converters[op.kind]
    out = operation_pb2.Operation(name=op.name, kind=op.kind, done=op.done, create_time=_timestamp(op.create_time),
                                  update_time=_timestamp(op.update_time))
    if op.progress is not None:
        out.metadata.CopyFrom(_packed(convert.progress(op.progress)))
    if op.done and op.error is not None:
        out.error.CopyFrom(rpc.error_detail(op.error))
    elif op.done:
        out.response.CopyFrom(_packed(convert.result(op.result)))
    return out


class OperationsServicer(pb_grpc.OperationsServiceServicer):
    def __init__(self, operations: Operations, converters: Mapping[str, Converters]) -> None:
        self._operations = operations
        self._converters = converters

    async def GetOperation(self, request: pb.GetOperationRequest, context) -> pb.GetOperationResponse:
        op = self._operations.get(request.name, request.tenant)
        return pb.GetOperationResponse(request_id=rpc.request_id(request), operation=to_proto(op, self._converters))

    async def ListOperations(self, request: pb.ListOperationsRequest, context) -> pb.ListOperationsResponse:
        ops, token = self._operations.list(request.tenant, request.kind, request.page_size, request.page_token)
        return pb.ListOperationsResponse(request_id=rpc.request_id(request), next_page_token=token,
                                         operations=[to_proto(op, self._converters) for op in ops])

    async def CancelOperation(self, request: pb.CancelOperationRequest, context) -> pb.CancelOperationResponse:
        op = self._operations.cancel(request.name, request.tenant)
        return pb.CancelOperationResponse(request_id=rpc.request_id(request),
                                          operation=to_proto(op, self._converters))


def operations_spec(operations: Operations, converters: Mapping[str, Converters]) -> ServiceSpec:
    """The OperationsService to mount with ``run_service`` beside the service's own."""
    servicer = OperationsServicer(operations, converters)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_OperationsServiceServicer_to_server(servicer, server))
