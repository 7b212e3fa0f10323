"""genai_core.logs: one JSON object per record, with the trace of the current span."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime

import pytest
from genai_core.logs import JsonFormatter, setup_logging
from opentelemetry.sdk.trace import TracerProvider

KEYS = {"timestamp", "severity", "message", "service", "logger", "trace_id", "span_id"}


def _record(msg: str = "hello %s", args=("world",), level: int = logging.WARNING, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("genai.test", level, __file__, 1, msg, args, exc_info)


def test_outside_a_span_trace_fields_are_empty():
    entry = json.loads(JsonFormatter("tokenizer").format(_record()))
    assert set(entry) == KEYS
    assert entry["message"] == "hello world"
    assert entry["severity"] == "WARNING"
    assert entry["service"] == "tokenizer"
    assert entry["logger"] == "genai.test"
    assert entry["trace_id"] == "" and entry["span_id"] == ""
    stamp = datetime.fromisoformat(entry["timestamp"])
    assert stamp.utcoffset().total_seconds() == 0


def test_inside_a_span_trace_and_span_ids_are_filled():
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("op") as span:
        entry = json.loads(JsonFormatter("svc").format(_record()))
    ctx = span.get_span_context()
    assert entry["trace_id"] == format(ctx.trace_id, "032x")
    assert entry["span_id"] == format(ctx.span_id, "016x")
    assert re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"])


def test_exceptions_are_included_and_output_is_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        line = JsonFormatter("svc").format(_record("failed", (), logging.ERROR, sys.exc_info()))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == "ERROR"
    assert "ValueError: bad" in entry["exception"]


def test_non_ascii_is_kept_readable():
    line = JsonFormatter("svc").format(_record("naïve %s", ("東京",)))
    assert "naïve 東京" in line
    assert json.loads(line)["message"] == "naïve 東京"


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_logging_sends_json_to_stdout(restore_root_logger, capsys):
    setup_logging("tokenizer", "debug")
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert len(root.handlers) == 1
    logging.getLogger("genai.some.module").debug("loaded %d tokenizers", 2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    entry = json.loads(lines[-1])
    assert entry["message"] == "loaded 2 tokenizers"
    assert entry["severity"] == "DEBUG"
    assert entry["service"] == "tokenizer"
    assert entry["logger"] == "genai.some.module"
