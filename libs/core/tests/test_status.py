"""genai_core.errors and genai_core.status.to_status / internal_status, without a server."""

from __future__ import annotations

import grpc
import pytest
from genai_core import errors
from genai_core.errors import ErrorCode, FieldViolation, GenAIError, InvalidArgument, NotFound
from genai_core.status import ERROR_DOMAIN, GRPC_CODES, internal_status, to_status
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider


def _details(status: grpc.Status) -> tuple[status_pb2.Status, list]:
    """Decode the grpc-status-details-bin trailer that to_status builds."""
    (key, value), = [(k, v) for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    rich = status_pb2.Status.FromString(value)
    unpacked = []
    for any_ in rich.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.ResourceInfo):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                unpacked.append(msg)
    assert len(unpacked) == len(rich.details), "every detail is a known google.rpc type"
    return rich, unpacked


def _one(items, kind):
    found = [d for d in items if isinstance(d, kind)]
    assert len(found) == 1, f"expected exactly one {kind.__name__}, got {found}"
    return found[0]


def test_every_error_code_has_a_grpc_code_of_the_same_name():
    assert set(GRPC_CODES) == set(ErrorCode)
    for code, grpc_code in GRPC_CODES.items():
        assert grpc_code.name == code.value


def test_every_taxonomy_class_maps_to_its_own_code():
    classes = {
        errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        errors.NotFound: grpc.StatusCode.NOT_FOUND,
        errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
        errors.Aborted: grpc.StatusCode.ABORTED,
        errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
        errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
        errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
        errors.Cancelled: grpc.StatusCode.CANCELLED,
        errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    }
    # A new subclass in errors.py must be added here (and so be tested).
    defined = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, GenAIError) and c is not GenAIError}
    assert defined == set(classes)
    for cls, expected in classes.items():
        status = to_status(cls("fix the thing"))
        assert status.code is expected
        assert status.details == "fix the thing"
        rich, details = _details(status)
        assert rich.code == getattr(code_pb2, expected.name)
        assert rich.message == "fix the thing"
        info = _one(details, error_details_pb2.ErrorInfo)
        assert info.reason == expected.name  # the default reason is the code
        assert info.domain == ERROR_DOMAIN
        # No BadRequest/ResourceInfo unless the error carries them.
        assert len(details) == 1


def test_base_error_is_invalid_argument_and_str_is_the_message():
    error = GenAIError("do X instead")
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert str(error) == "do X instead"
    assert error.args == ("do X instead",)


def test_for_field_builds_message_and_violation():
    error = InvalidArgument.for_field("texts[3]", "too long")
    assert error.message == "texts[3]: too long"
    assert error.field_violations == [FieldViolation("texts[3]", "too long")]


def test_bad_request_details_list_every_violation():
    error = InvalidArgument(
        "two fields are wrong",
        [FieldViolation("texts[0]", "empty"), FieldViolation("page_size", "must be at most 100")],
    )
    status = to_status(error)
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    _, details = _details(status)
    bad = _one(details, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("texts[0]", "empty"),
        ("page_size", "must be at most 100"),
    ]
    assert not [d for d in details if isinstance(d, error_details_pb2.ResourceInfo)]


def test_resource_info_and_custom_reason():
    error = NotFound("tokenizer 'x' does not exist", reason="TOKENIZER_NOT_FOUND", resource_type="tokenizer", resource_name="x")
    status = to_status(error)
    assert status.code is grpc.StatusCode.NOT_FOUND
    _, details = _details(status)
    resource = _one(details, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("tokenizer", "x")
    assert resource.description == "tokenizer 'x' does not exist"
    assert _one(details, error_details_pb2.ErrorInfo).reason == "TOKENIZER_NOT_FOUND"


def test_resource_info_with_only_a_name():
    _, details = _details(to_status(NotFound("gone", resource_name="x")))
    assert _one(details, error_details_pb2.ResourceInfo).resource_name == "x"


def test_to_status_round_trips_through_rpc_status():
    """The trailer is the one grpc_status.rpc_status.to_status would build: clients can parse it."""
    status = to_status(InvalidArgument.for_field("a", "b"))
    assert status.trailing_metadata[0][0] == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(status.trailing_metadata[0][1])
    rebuilt = rpc_status.to_status(rich)
    assert rebuilt.code is status.code and rebuilt.details == status.details


def test_internal_status_outside_a_trace_says_unknown():
    status = internal_status()
    assert status.code is grpc.StatusCode.INTERNAL
    assert "trace id unknown" in status.details


def test_internal_status_names_the_current_trace_id():
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("handler") as span:
        status = internal_status()
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert status.code is grpc.StatusCode.INTERNAL
    assert f"trace id {trace_id}" in status.details


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_subclass_for_every_code_maps(code):
    cls = type(f"E_{code.name}", (GenAIError,), {"code": code})
    assert to_status(cls("m")).code is GRPC_CODES[code]
