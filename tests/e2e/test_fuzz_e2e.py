"""Schemathesis over the gateway's own OpenAPI schema against the real suite (issue 14: "keep it fixed").

Every operation of ``/openapi.json`` gets generated requests, valid and invalid ones; the run fails on any 5xx,
a status, content type, header or body the schema does not document, and an invalid request that is
accepted (``Allow`` on 405s is checked by gateway/tests/test_http_errors.py). What it does not require: that every
schema-valid request succeeds (a token id beyond the vocabulary, an unknown model, a collection that does not
exist are valid JSON and rightly 4xx).

Bounded: ``FUZZ_EXAMPLES`` cases per operation (``FUZZ_GENERATION_EXAMPLES`` for the routes that generate text,
whose token limits are capped to a few tokens before sending), about two minutes on 2 cores. Raise them for a
deeper local run: ``GENAI_FUZZ_EXAMPLES=200 pytest tests/e2e/test_fuzz_e2e.py`` (with ``GENAI_FUZZ_URL`` set, against a
suite that is already running).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FUZZ_EXAMPLES = int(os.environ.get("GENAI_FUZZ_EXAMPLES", "40"))
FUZZ_GENERATION_EXAMPLES = int(os.environ.get("GENAI_FUZZ_GENERATION_EXAMPLES", "10"))
GENERATION = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/rag/answer", "/generate",
              "/generate_stream", "/"}
# Generated token limits are capped: the run checks the HTTP contract, not how long SmolLM2 can write.
MAX_TOKENS = {"max_tokens": 4, "max_completion_tokens": 4, "max_output_tokens": 4, "max_new_tokens": 4}
CHECKS_RUN = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance, negative_data_rejection, missing_required_header, unsupported_method,
              allow_header_conformance]


def _capped(body):
    """``body`` with every token limit at most a few tokens, and one set where the route would default to 256+."""
    if isinstance(body, list):
        return [_capped(v) for v in body]
    if not isinstance(body, dict):
        return body
    out = {k: (min(v, MAX_TOKENS[k]) if k in MAX_TOKENS and type(v) is int else _capped(v)) for k, v in body.items()}
    if type(out.get("n")) is int and out["n"] > 2:
        out["n"] = 2
    return out


def _bounded(case) -> None:
    if case.operation.path not in GENERATION or not isinstance(case.body, dict):
        return
    body = _capped(case.body)
    if case.operation.path in ("/generate", "/generate_stream", "/"):
        if isinstance(body.get("parameters"), dict):
            body["parameters"].setdefault("max_new_tokens", 4)
        elif "parameters" not in body:
            body["parameters"] = {"max_new_tokens": 4}
    else:
        key = {"/v1/responses": "max_output_tokens"}.get(case.operation.path, "max_tokens")
        if "max_completion_tokens" not in body:
            body.setdefault(key, 4)
    case.body = body


@pytest.fixture(scope="session")
def gateway_schema(request):
    # GENAI_FUZZ_URL: fuzz a suite you started yourself (`make run`: http://127.0.0.1:8080) instead of a new one.
    url = os.environ.get("GENAI_FUZZ_URL") or request.getfixturevalue("suite").base_url
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def _fuzz(operation, mode: GenerationMode, examples: int) -> str | None:
    """Run ``examples`` generated cases of one operation; the failure report, or None."""

    # No shrinking: a failure is reported as found (its curl line reproduces it), and the run stays bounded.
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        _bounded(case)
        case.call_and_validate(checks=CHECKS_RUN, timeout=120)

    try:
        run()
    except Unsatisfiable:  # nothing invalid to send (no parameters, or none that can be wrong)
        return None
    except Exception as exc:  # noqa: BLE001 - every failure of every operation is reported together
        return f"{operation.label} ({mode.value}):\n{exc}"
    return None


# The pytest plugin's lazy schemas do not run under this pytest (it reads a private attribute); driving
# hypothesis directly also lets each operation get its own budget.
@pytest.mark.timeout(900)  # about two minutes alone; more on a machine shared with other work
def test_gateway_conforms_to_its_schema(gateway_schema):
    operations = [result.ok() for result in gateway_schema.get_all_operations()]
    assert len(operations) > 30
    failures = []
    for operation in operations:
        examples = FUZZ_GENERATION_EXAMPLES if operation.path in GENERATION else FUZZ_EXAMPLES
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, examples)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
