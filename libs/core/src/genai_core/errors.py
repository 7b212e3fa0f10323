"""The one error taxonomy of the platform.

Domain code raises these; it never imports grpc. The gRPC mapping lives in
``genai_core.status`` and the HTTP mapping in the gateway, each written once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ErrorCode(enum.Enum):
    """Canonical codes, named as in google.rpc.Code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNIMPLEMENTED = "UNIMPLEMENTED"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` is a path such as ``texts[3]``; ``description`` says what to fix."""

    field: str
    description: str


@dataclass
class GenAIError(Exception):
    """Base of every expected failure; ``message`` must tell the caller what to fix."""

    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    reason: str = ""  # a stable UPPER_SNAKE identifier for machines (google.rpc.ErrorInfo)
    resource_type: str = ""
    resource_name: str = ""

    code = ErrorCode.INVALID_ARGUMENT

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidArgument(GenAIError):
    """The request is malformed; fixing the named fields will make it succeed."""

    code = ErrorCode.INVALID_ARGUMENT

    @classmethod
    def for_field(cls, field_path: str, description: str) -> InvalidArgument:
        return cls(f"{field_path}: {description}", [FieldViolation(field_path, description)])


class NotFound(GenAIError):
    """A named resource does not exist."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(GenAIError):
    """A resource with that name exists already."""

    code = ErrorCode.ALREADY_EXISTS


class Aborted(GenAIError):
    """The request conflicts with concurrent work on the same resource (a busy thread); retry later."""

    code = ErrorCode.ABORTED


class FailedPrecondition(GenAIError):
    """The request is valid but the system is not in a state to run it."""

    code = ErrorCode.FAILED_PRECONDITION


class OutOfRange(GenAIError):
    """A value is past the end of a valid range, such as a page token."""

    code = ErrorCode.OUT_OF_RANGE


class ResourceExhausted(GenAIError):
    """A queue, quota or size limit is full; retry later or send less."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(GenAIError):
    """The service cannot serve now (starting, draining, or a backend is down); retry."""

    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(GenAIError):
    """The work did not finish before its deadline."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Cancelled(GenAIError):
    """The caller cancelled the work."""

    code = ErrorCode.CANCELLED


class Unimplemented(GenAIError):
    """The operation is part of the contract but this deployment does not offer it."""

    code = ErrorCode.UNIMPLEMENTED
