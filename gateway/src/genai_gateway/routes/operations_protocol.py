"""HTTP shape of long-running operations (genai.type.v1.Operation), the same for every service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class OperationError(BaseModel):
    code: str = Field(description="The canonical code, such as INVALID_ARGUMENT or CANCELLED.")
    reason: str
    message: str


class Operation(BaseModel):
    name: str = Field(description='"operations/{service}-{id}"; GET /v1/{name} reads it again.')
    kind: str = Field(description='"{service}.{verb}", such as "retrieval.ingest": how to read metadata and response.')
    done: bool
    metadata: dict[str, Any] | None = Field(
        None, description='Progress, in the owning service\'s message (its "@type" names it); absent before the first.'
    )
    response: dict[str, Any] | None = Field(
        None, description="The result once done: what the synchronous form of the method returns."
    )
    error: OperationError | None = Field(None, description="Set instead of response when the work failed.")
    create_time: str
    update_time: str
