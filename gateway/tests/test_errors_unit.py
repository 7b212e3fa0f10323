"""errors.py without a server: the status table, call() and the field-path renames."""

from __future__ import annotations

import json

import grpc
import pytest
from genai_core import errors as core_errors
from genai_core.status import ERROR_DOMAIN, to_status
from genai_gateway.errors import HTTP_FOR_GRPC, SERVER_ERROR, GatewayError, _rename, call, envelope
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

EXPECTED = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
SERVER_ERROR_CODES = [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS]


def test_table_is_exactly_the_documented_mapping():
    assert HTTP_FOR_GRPC == EXPECTED
    assert SERVER_ERROR == (500, "server_error")


def test_every_status_code_is_covered_or_a_server_error():
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        assert code in HTTP_FOR_GRPC or code in SERVER_ERROR_CODES, code


def _rpc_error(code: grpc.StatusCode, details: str = "", trailing: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details, debug_error_string=""
    )


def _from_domain(error: core_errors.GenAIError) -> grpc.aio.AioRpcError:
    status = to_status(error)
    return _rpc_error(status.code, status.details, tuple(status.trailing_metadata))


async def _failing(exc: Exception):
    raise exc


def _decided(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """An error a service decided: it carries the platform's ErrorInfo."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="REASON", domain=ERROR_DOMAIN))
    status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[info]))
    return _rpc_error(code, message, tuple(status.trailing_metadata))


@pytest.mark.parametrize(("code", "expected"), list(EXPECTED.items()), ids=lambda v: getattr(v, "name", ""))
async def test_call_maps_each_code(code, expected):
    with pytest.raises(GatewayError) as info:
        await call(_failing(_decided(code, "it failed")))
    error = info.value
    assert (error.status, error.type) == expected
    assert error.code == code.name.lower()
    assert error.message == "it failed"
    assert error.param is None


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.UNAVAILABLE, "the inference service is unavailable; retry shortly"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "the inference service did not answer within the deadline"),
    ],
)
async def test_transport_failures_name_the_service_not_its_address(code, message, caplog):
    # Issue 14 defect 6: the channel's text names internal addresses; it goes to the log, the client gets the service.
    raw = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:50052: Failed to connect"
    with pytest.raises(GatewayError) as info:
        await call(_failing(_rpc_error(code, raw)), service="inference")
    assert info.value.message == message
    assert "127.0.0.1" not in info.value.message and "50052" not in info.value.message
    assert "127.0.0.1:50052" in caplog.text and "inference" in caplog.text


async def test_unavailable_decided_by_a_service_keeps_its_message():
    # Retrieval answers UNAVAILABLE when *its* embedding backend is down: that message must survive.
    rpc = _from_domain(core_errors.Unavailable("the embedding service is unavailable; retry shortly"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc), service="retrieval")
    assert info.value.message == "the embedding service is unavailable; retry shortly"


async def test_unknown_model_has_openais_code():
    rpc = _from_domain(core_errors.NotFound("model 'x' does not exist", resource_type="model", resource_name="x"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc))
    assert (info.value.status, info.value.code) == (404, "model_not_found")


@pytest.mark.parametrize(("status", "header"), [(401, "www-authenticate"), (429, "retry-after"), (503, "retry-after")])
def test_statuses_carry_the_headers_http_asks_for(status, header):
    assert header in envelope(status, "m", "t", "c").headers


@pytest.mark.parametrize("code", SERVER_ERROR_CODES, ids=lambda c: c.name)
async def test_call_maps_unlisted_codes_to_500(code):
    with pytest.raises(GatewayError) as info:
        await call(_failing(_rpc_error(code, "internal error; report trace id abc to the operator")))
    assert (info.value.status, info.value.type) == (500, "server_error")
    assert info.value.code == code.name.lower()


async def test_call_without_details_uses_the_code_name():
    with pytest.raises(GatewayError) as info:
        await call(_failing(_rpc_error(grpc.StatusCode.ABORTED)))
    assert info.value.message == "aborted"
    assert info.value.status == 409


async def test_call_returns_the_value():
    async def ok():
        return 42

    assert await call(ok(), {r"^texts": "input"}) == 42


async def test_call_does_not_swallow_other_exceptions():
    with pytest.raises(ValueError):
        await call(_failing(ValueError("not grpc")))


async def test_call_renames_the_field_violation_in_param_and_message():
    rpc = _from_domain(core_errors.InvalidArgument.for_field("texts[2]", "12 characters exceed the limit of 10"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc), {r"^texts": "input"})
    assert info.value.param == "input[2]"
    assert info.value.message == "input[2]: 12 characters exceed the limit of 10"
    assert info.value.status == 400


async def test_call_keeps_proto_names_without_renames():
    rpc = _from_domain(core_errors.InvalidArgument.for_field("texts[2]", "too long"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc))
    assert info.value.param == "texts[2]"
    assert info.value.message == "texts[2]: too long"


async def test_call_detokenize_renames():
    renames = {r"^sequences\[(\d+)\]\.ids": r"ids[\1]", r"^sequences": "ids"}
    rpc = _from_domain(core_errors.InvalidArgument.for_field("sequences[1].ids[4]", "out of range"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc), renames)
    assert info.value.param == "ids[1][4]"
    assert info.value.message == "ids[1][4]: out of range"


async def test_call_without_violation_has_no_param():
    rpc = _from_domain(core_errors.NotFound("tokenizer 'x' does not exist", resource_type="tokenizer"))
    with pytest.raises(GatewayError) as info:
        await call(_failing(rpc), {r"^texts": "input"})
    assert info.value.param is None
    assert info.value.status == 404
    assert info.value.message == "tokenizer 'x' does not exist"


@pytest.mark.parametrize(
    ("path", "renames", "expected"),
    [
        ("texts[2]", {r"^texts": "input"}, "input[2]"),
        ("texts", {r"^texts": "input"}, "input"),
        ("sequences[3].ids[7]", {r"^sequences\[(\d+)\]\.ids": r"ids[\1]", r"^sequences": "ids"}, "ids[3][7]"),
        ("sequences", {r"^sequences\[(\d+)\]\.ids": r"ids[\1]", r"^sequences": "ids"}, "ids"),
        ("files.paths[0]", {r"^tokenizer_id": "id", r"^files\.paths": "files"}, "files[0]"),
        ("tokenizer_id", {r"^tokenizer_id": "id", r"^files\.paths": "files"}, "id"),
        ("inline.texts[1]", {r"^inline\.texts": "texts", r"^(inline|corpus)": "texts"}, "texts[1]"),
        ("corpus", {r"^inline\.texts": "texts", r"^(inline|corpus)": "texts"}, "texts"),
        ("inline.texts[1]", {r"^texts": "input"}, "inline.texts[1]"),  # anchored: no mid-path rename
        ("vocab_size", {r"^texts": "input"}, "vocab_size"),  # no match: unchanged
        ("texts[0]", {}, "texts[0]"),
        ("texts.texts", {"texts": "input"}, "input.texts"),  # one substitution only
        ("abc", {"b": "X", "a": "Y"}, "aXc"),  # first matching pattern wins, in order
    ],
)
def test_rename(path, renames, expected):
    assert _rename(path, renames) == expected


def test_envelope_shape_outside_a_trace():
    response = envelope(418, "short and stout", "teapot_error", "teapot", "lid")
    assert response.status_code == 418
    assert json.loads(response.body) == {
        "error": {
            "message": "short and stout",
            "type": "teapot_error",
            "code": "teapot",
            "param": "lid",
            "trace_id": "",
        }
    }


def test_gateway_error_fields():
    error = GatewayError(401, "no key", "authentication_error", "invalid_api_key")
    assert (error.status, error.message, error.type, error.code, error.param) == (
        401,
        "no key",
        "authentication_error",
        "invalid_api_key",
        None,
    )
    assert str(error) == "no key"
