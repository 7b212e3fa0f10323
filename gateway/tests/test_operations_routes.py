"""GET /v1/operations/{id} and POST .../cancel: routed to the service the id names, tenant by tenant."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from genai_core.operations import Operations
from genai_core.operations_servicer import Converters, operations_spec
from genai_core.testing import running_server
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from google.protobuf import wrappers_pb2
from opentelemetry.sdk.trace import TracerProvider

CONVERTERS = {"retrieval.ingest": Converters(progress=lambda n: wrappers_pb2.UInt32Value(value=n),
                                             result=lambda text: wrappers_pb2.StringValue(value=text))}


@pytest.fixture(scope="module")
async def owner():
    operations = Operations("retrieval")
    async with running_server([operations_spec(operations, CONVERTERS)]) as (server, _):
        yield operations, server.port
    await operations.close()


@pytest.fixture(scope="module")
async def http(owner, tokenizer_port):
    _, port = owner
    # The tokenizer serves no OperationsService: its "operations" are unknown, not an error of the gateway.
    settings = GatewaySettings(targets={"retrieval": f"127.0.0.1:{port}", "tokenizer": f"127.0.0.1:{tokenizer_port}"})
    app = build_app(settings, tracer_provider=TracerProvider())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            yield client


async def _work(report, gate: asyncio.Event):
    report(7)
    await gate.wait()
    return "done"


async def test_progress_then_result(owner, http):
    operations, _ = owner
    gate = asyncio.Event()
    op = operations.start("retrieval.ingest", "acme", lambda report: _work(report, gate))
    await asyncio.sleep(0.01)
    path = f"/v1/{op.name}"
    running = (await http.get(path, headers={"X-Tenant": "acme"})).json()
    assert running["name"] == op.name and running["kind"] == "retrieval.ingest" and running["done"] is False
    assert running["metadata"] == {"@type": "type.googleapis.com/google.protobuf.UInt32Value", "value": 7}
    assert "response" not in running and "error" not in running
    gate.set()
    await asyncio.sleep(0.05)
    done = (await http.get(path, headers={"X-Tenant": "acme"})).json()
    assert done["done"] is True and done["response"]["value"] == "done"


async def test_cancel(owner, http, assert_envelope):
    operations, _ = owner
    op = operations.start("retrieval.ingest", "acme", lambda report: _work(report, asyncio.Event()))
    await asyncio.sleep(0.01)
    r = await http.post(f"/v1/{op.name}/cancel", headers={"X-Tenant": "acme"})
    assert r.status_code == 200, r.text
    await asyncio.sleep(0.05)
    ended = (await http.get(f"/v1/{op.name}", headers={"X-Tenant": "acme"})).json()
    assert ended["done"] and ended["error"]["code"] == "CANCELLED" and "response" not in ended


async def test_another_tenant_gets_404(owner, http, assert_envelope):
    operations, _ = owner
    op = operations.start("retrieval.ingest", "acme", lambda report: _work(report, asyncio.Event()))
    assert_envelope(await http.get(f"/v1/{op.name}"), 404, "not_found_error")
    assert_envelope(await http.post(f"/v1/{op.name}/cancel", headers={"X-Tenant": "other"}), 404)
    operations.cancel(op.name, "acme")


@pytest.mark.parametrize("operation_id", ["nosuchservice-ab12", "tokenizer-ab12", "retrieval-ab12"])
async def test_unknown_operations_are_404(http, assert_envelope, operation_id):
    error = assert_envelope(await http.get(f"/v1/operations/{operation_id}"), 404, "not_found_error")
    assert operation_id in error["message"]


async def test_a_malformed_id_is_400(http, assert_envelope):
    error = assert_envelope(await http.get("/v1/operations/not an id"), 400)
    assert error["param"] == "operation_id"
