"""The agent routes (/langgraph, /v1/agent, and agents behind the OpenAI API) under issue 14's rules: the tenant
header is a valid name on every route, and the request the schemathesis run found answering 500 is a 400.

Everything here is refused before the gateway asks the agent service, so these run with no backends.
"""

from __future__ import annotations

import pytest
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings

# One body for every agent route that takes one: its required fields (the LangGraph bodies ignore extra keys).
BODY = {"graph_id": "react", "assistant_id": "react", "checkpoint": {}}


def _agent_routes() -> dict[tuple[str, str], bool]:
    """Every agent route, and whether it declares the X-Tenant header."""
    schema = build_app(GatewaySettings(targets={})).openapi()
    return {(method.upper(), path): any(p["in"] == "header" and p["name"] == "X-Tenant"
                                        for p in op.get("parameters", []))
            for path, item in schema["paths"].items() for method, op in item.items()
            if path.startswith(("/langgraph", "/v1/agent"))}


ROUTES = _agent_routes()
TENANT_ROUTES = sorted(route for route, tenant in ROUTES.items() if tenant)


def test_every_agent_route_takes_the_tenant_header():
    # Only what belongs to no tenant: liveness and the runtime's description.
    assert {r for r, tenant in ROUTES.items() if not tenant} == {
        ("GET", "/langgraph/ok"), ("GET", "/langgraph/info"), ("GET", "/v1/agent/info")}
    assert len(TENANT_ROUTES) > 30


@pytest.mark.parametrize("tenant", ["", "#P>XuAfE*\"?92@W9", "UPPER", "a" * 64])
@pytest.mark.parametrize(("method", "path"), TENANT_ROUTES, ids=[f"{m} {p}" for m, p in TENANT_ROUTES])
async def test_a_bad_tenant_is_400_naming_the_header(absent_client, assert_envelope, method, path, tenant):
    url = path.replace("{", "").replace("}", "")  # {thread_id} -> thread_id: any id will do
    body = BODY if method in ("POST", "PATCH") else None
    r = await absent_client.request(method, url, headers={"X-Tenant": tenant},
                                    **({"json": body} if body is not None else {}))
    error = assert_envelope(r, 400, "invalid_request_error", "invalid_argument")
    assert error["param"] == "X-Tenant", error


async def test_schemathesis_reproduction_is_400(absent_client, assert_envelope):
    # tests/e2e/test_fuzz_e2e.py found this answering 500: a bad tenant, floats for integers, an offset beyond uint32.
    r = await absent_client.post("/langgraph/assistants/search", headers={"X-Tenant": "#P>XuAfE*\"?92@W9"}, json={
        "limit": 794.0, "metadata": None, "sort_order": None, "offset": 5916105397.0, "graph_id": None})
    assert assert_envelope(r, 400, "invalid_request_error", "invalid_argument")["param"] in ("X-Tenant", "limit",
                                                                                             "offset")
    for body, param in (({"limit": 794.0}, "limit"), ({"offset": 5916105397}, "offset"), ({"offset": 2.0}, "offset")):
        r = await absent_client.post("/langgraph/assistants/search", json=body)
        assert assert_envelope(r, 400, "invalid_request_error", "invalid_argument")["param"] == param


async def test_the_openai_routes_check_the_tenant_of_an_agent(absent_client, assert_envelope):
    r = await absent_client.post("/v1/chat/completions", headers={"X-Tenant": "Not Valid"},
                                 json={"model": "agent:react", "messages": [{"role": "user", "content": "hi"}]})
    assert assert_envelope(r, 400, "invalid_request_error", "invalid_argument")["param"] == "X-Tenant"
    r = await absent_client.get("/v1/models/agent:react", headers={"X-Tenant": ""})
    assert assert_envelope(r, 400, "invalid_request_error", "invalid_argument")["param"] == "X-Tenant"
