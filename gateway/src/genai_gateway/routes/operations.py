"""Long-running operations of every service: ``GET /v1/operations/{id}`` and ``POST /v1/operations/{id}/cancel``.

The id is "{service}-{hex}" and the operation's name "operations/{id}" (AIP-151), so the route is ``/v1/{name}``
and the service that owns the operation is the id's prefix: the gateway asks that service's
OperationsService. Operations belong to the tenant of ``X-Tenant``, as collections do.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from genai.operations.v1 import operations_service_pb2 as pb
from genai_core.limits import RETRIEVAL
from genai_core.services import SERVICES
from google.protobuf import json_format

from genai_gateway.errors import GatewayError
from genai_gateway.routes import calls
from genai_gateway.routes import operations_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["operations"], route_class=ApiRoute)

OperationId = Annotated[str, Path(pattern=r"^[a-z]+-[0-9a-f]{1,64}$", description='"{service}-{hex}"')]
Tenant = Annotated[str, Header(alias="X-Tenant", pattern=RETRIEVAL.name_pattern,
                               description="the tenant that started the operation (default: `default`)")]


def _missing(operation_id: str) -> GatewayError:
    return GatewayError(404, f"operation {operation_id!r} does not exist", "not_found_error", "not_found")


def _stub(request: Request, operation_id: str) -> Any:
    service = operation_id.split("-", 1)[0]
    if service not in SERVICES:
        raise _missing(operation_id)
    return calls.stub_of_operations(request, service)


def operation_json(operation) -> dict[str, Any]:
    """A ``genai.type.v1.Operation`` as HTTP JSON (the ``Operation`` model): Any fields keep their "@type"."""
    return json_format.MessageToDict(operation, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


async def _ask(request: Request, operation_id: str, rpc: str, message: Any) -> dict[str, Any]:
    try:
        reply = await calls.unary(request, getattr(_stub(request, operation_id), rpc)(message))
    except GatewayError as exc:
        if exc.code == "unimplemented":  # the service runs no operations
            raise _missing(operation_id) from exc
        raise
    return operation_json(reply.operation)


@router.get("/v1/operations/{operation_id}", response_model=api.Operation, response_model_exclude_none=True,
            summary="A long-running operation: progress while it runs, then its result or error")
async def get_operation(operation_id: OperationId, request: Request, x_tenant: Tenant = "default"):
    message = pb.GetOperationRequest(request_id=calls.request_id(request), name=f"operations/{operation_id}",
                                     tenant=x_tenant)
    return await _ask(request, operation_id, "GetOperation", message)


@router.post("/v1/operations/{operation_id}/cancel", response_model=api.Operation, response_model_exclude_none=True,
             summary="Ask a running operation to stop; it ends with error code CANCELLED")
async def cancel_operation(operation_id: OperationId, request: Request, x_tenant: Tenant = "default"):
    message = pb.CancelOperationRequest(request_id=calls.request_id(request), name=f"operations/{operation_id}",
                                        tenant=x_tenant)
    return await _ask(request, operation_id, "CancelOperation", message)
