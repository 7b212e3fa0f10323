"""What every servicer writes into responses: request ids, token usage, timings, in-band stream errors.

Servicers (never domain modules) use these, so every service fills the shared ``genai.type.v1`` messages
the same way:

    >>> usage(12, 3).total_tokens
    15
    >>> error_detail(ValueError("boom")).code
    'INTERNAL'
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from genai.type.v1 import error_pb2, usage_pb2

from genai_core.errors import GenAIError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def request_id(request: Any) -> str:
    """The caller's ``request_id``, or a fresh one: every response echoes one."""
    return request.request_id or uuid.uuid4().hex


def usage(prompt: int = 0, completion: int = 0, cached_prompt: int = 0) -> usage_pb2.Usage:
    return usage_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                           cached_prompt_tokens=cached_prompt)


def timings(total_s: float, queue_s: float | None = None, first_token_s: float | None = None) -> usage_pb2.Timings:
    """Durations in seconds as a Timings message; unset parts stay unset."""
    out = usage_pb2.Timings()
    out.total_duration.FromNanoseconds(int(total_s * 1e9))
    if queue_s is not None:
        out.queue_duration.FromNanoseconds(int(queue_s * 1e9))
    if first_token_s is not None:
        out.time_to_first_token.FromNanoseconds(int(first_token_s * 1e9))
    return out


def error_detail(exc: BaseException, internal: str = "internal error") -> error_pb2.ErrorDetail:
    """A failure as the in-band ``ErrorDetail`` of a stream: domain errors keep their code and message,
    anything else is INTERNAL with ``internal`` (never the exception's text)."""
    if isinstance(exc, GenAIError):
        return error_pb2.ErrorDetail(code=exc.code.value, reason=exc.reason or exc.code.value, message=exc.message)
    return error_pb2.ErrorDetail(code="INTERNAL", reason="INTERNAL", message=internal)


async def in_band(events: AsyncIterator[tuple[str, T]], what: str, rid: str
                  ) -> AsyncIterator[tuple[str, T | error_pb2.ErrorDetail]]:
    """``events``, then ``("error", ErrorDetail)`` if they fail after the first one was sent.

    Before the first event a failure raises, so the RPC ends with its status code; after it the client
    has started reading, and a status would lose what it received, so the error travels in the stream.
    """
    started = False
    try:
        async for kind, event in events:
            started = True
            yield kind, event
    except Exception as exc:  # noqa: BLE001 - output has started: report in-band
        if not started:
            raise
        if not isinstance(exc, GenAIError):
            logger.exception("%s %s failed", what, rid)
        yield "error", error_detail(exc)
