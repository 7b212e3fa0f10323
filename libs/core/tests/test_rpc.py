"""Servicer helpers: request ids, usage, timings and in-band stream errors."""

from __future__ import annotations

import types

import pytest
from genai_core import errors
from genai_core.rpc import error_detail, in_band, request_id, timings, usage


def test_request_id_echoes_or_invents():
    assert request_id(types.SimpleNamespace(request_id="abc")) == "abc"
    invented = request_id(types.SimpleNamespace(request_id=""))
    assert len(invented) == 32 and invented != request_id(types.SimpleNamespace(request_id=""))


def test_usage_and_timings():
    u = usage(10, 5, cached_prompt=4)
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_prompt_tokens) == (10, 5, 15, 4)
    t = timings(1.5, queue_s=0.25)
    assert t.total_duration.ToNanoseconds() == 1_500_000_000
    assert t.queue_duration.ToNanoseconds() == 250_000_000
    assert not t.HasField("time_to_first_token")


def test_error_detail_keeps_domain_errors_and_hides_others():
    detail = error_detail(errors.ResourceExhausted("queue full; retry", reason="QUEUE_FULL"))
    assert (detail.code, detail.reason, detail.message) == ("RESOURCE_EXHAUSTED", "QUEUE_FULL", "queue full; retry")
    hidden = error_detail(RuntimeError("db password"), "internal error while embedding")
    assert (hidden.code, hidden.message) == ("INTERNAL", "internal error while embedding")


async def _events(fail_after: int, exc: Exception):
    for i in range(fail_after):
        yield "delta", i
    raise exc


async def test_in_band_raises_before_the_first_event():
    with pytest.raises(errors.NotFound):
        async for _ in in_band(_events(0, errors.NotFound("no such collection")), "answer", "r1"):
            pass


async def test_in_band_reports_in_the_stream_after_the_first_event(caplog):
    got = [e async for e in in_band(_events(2, RuntimeError("secret")), "answer", "r1")]
    assert got[:2] == [("delta", 0), ("delta", 1)]
    kind, detail = got[2]
    assert kind == "error" and detail.code == "INTERNAL" and "secret" not in detail.message
    assert "answer r1 failed" in caplog.text
