"""genai_core.operations (the domain-side registry) and its gRPC servicer: one operations shape for the suite."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from genai.operations.v1 import operations_service_pb2 as pb
from genai.operations.v1 import operations_service_pb2_grpc as pb_grpc
from genai_core.errors import Cancelled, InvalidArgument, NotFound
from genai_core.operations import Operations, operation_service
from genai_core.operations_servicer import Converters, operations_spec
from genai_core.testing import running_server
from google.protobuf import wrappers_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _ingest(report, steps: int = 3, gate: asyncio.Event | None = None):
    for i in range(steps):
        report(i + 1)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
    return f"{steps} documents"


async def _settle(ops: Operations, name: str, tenant: str = "acme") -> None:
    for _ in range(100):
        if ops.get(name, tenant).done:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the operation did not finish")


async def test_start_reports_progress_then_the_result():
    ops, gate = Operations("retrieval"), asyncio.Event()
    op = ops.start("retrieval.ingest", "acme", lambda report: _ingest(report, gate=gate))
    assert op.name.startswith("operations/retrieval-") and not op.done
    await asyncio.sleep(0.01)
    assert ops.get(op.name, "acme").progress == 1 and not op.done
    gate.set()
    await _settle(ops, op.name)
    assert (op.done, op.progress, op.result, op.error) == (True, 3, "3 documents", None)


async def test_failures_and_cancellation_are_the_outcome():
    ops = Operations("retrieval")

    async def fail(report):
        raise InvalidArgument.for_field("documents[2]", "empty")

    failed = ops.start("retrieval.ingest", "acme", fail)
    gate = asyncio.Event()
    running = ops.start("retrieval.ingest", "acme", lambda report: _ingest(report, gate=gate))
    await asyncio.sleep(0.01)
    assert ops.cancel(running.name, "acme") is running
    await _settle(ops, running.name)
    await _settle(ops, failed.name)
    assert isinstance(failed.error, InvalidArgument) and failed.result is None
    assert isinstance(running.error, Cancelled) and running.progress == 1
    assert ops.cancel(running.name, "acme").done  # cancelling an ended one changes nothing


async def test_a_tenant_never_sees_another_tenants_operation():
    ops = Operations("retrieval")
    op = ops.start("retrieval.ingest", "acme", _ingest)
    with pytest.raises(NotFound):
        ops.get(op.name, "other")
    with pytest.raises(NotFound):
        ops.cancel(op.name, "")  # "" is the tenant "default"
    assert ops.list("other") == ([], "")
    await _settle(ops, op.name)


async def test_list_is_newest_first_in_pages():
    ops = Operations("retrieval")
    names = [ops.start("retrieval.ingest", "acme", _ingest).name for _ in range(5)]
    ops.start("retrieval.other", "acme", _ingest)
    page, token = ops.list("acme", "retrieval.ingest", page_size=2)
    assert [op.name for op in page] == names[::-1][:2] and token == "2"
    page, token = ops.list("acme", "retrieval.ingest", page_size=2, page_token=token)
    assert [op.name for op in page] == names[::-1][2:4]
    page, token = ops.list("acme", "retrieval.ingest", page_size=2, page_token=token)
    assert [op.name for op in page] == names[:1] and token == ""
    for token in ("abc", "4²"):  # "4²".isdigit() is True
        with pytest.raises(InvalidArgument):
            ops.list("acme", page_token=token)
    await ops.close()


async def test_finished_operations_are_forgotten_after_a_while():
    clock = Clock()
    ops = Operations("retrieval", keep_seconds=60, max_kept=3, clock=clock)
    first = ops.start("retrieval.ingest", "acme", _ingest)
    await _settle(ops, first.name)
    clock.now += 61
    ops.start("retrieval.ingest", "acme", _ingest)
    with pytest.raises(NotFound, match="restarted"):
        ops.get(first.name, "acme")
    for _ in range(5):
        op = ops.start("retrieval.ingest", "acme", _ingest)
        await _settle(ops, op.name)
    assert len(ops.list("acme")[0]) <= 4  # at most max_kept finished, plus the one just started


async def test_close_cancels_what_runs():
    ops, gate = Operations("agent"), asyncio.Event()
    op = ops.start("agent.run", "acme", lambda report: _ingest(report, gate=gate))
    await asyncio.sleep(0.01)
    await ops.close()
    assert op.done and isinstance(op.error, Cancelled)


@pytest.mark.parametrize(("name", "service"), [("operations/retrieval-ab12", "retrieval"),
                                               ("operations/finetune-1-2", "finetune")])
def test_the_name_says_which_service_owns_it(name, service):
    assert operation_service(name) == service


@pytest.mark.parametrize("name", ["retrieval-ab12", "operations/ab12", "operations/-x", "jobs/retrieval-1"])
def test_a_malformed_name_is_invalid(name):
    with pytest.raises(InvalidArgument):
        operation_service(name)


CONVERTERS = {"retrieval.ingest": Converters(progress=lambda n: wrappers_pb2.UInt32Value(value=n),
                                             result=lambda text: wrappers_pb2.StringValue(value=text))}


async def test_the_servicer_packs_progress_and_result_by_kind():
    ops, gate = Operations("retrieval"), asyncio.Event()
    async with running_server([operations_spec(ops, CONVERTERS)]) as (_, channel):
        stub = pb_grpc.OperationsServiceStub(channel)
        op = ops.start("retrieval.ingest", "acme", lambda report: _ingest(report, gate=gate))
        await asyncio.sleep(0.01)
        running = (await stub.GetOperation(pb.GetOperationRequest(name=op.name, tenant="acme"))).operation
        progress = wrappers_pb2.UInt32Value()
        assert running.metadata.Unpack(progress) and progress.value == 1
        assert not running.done and running.WhichOneof("result") is None and running.kind == "retrieval.ingest"
        gate.set()
        await _settle(ops, op.name)
        done = (await stub.GetOperation(pb.GetOperationRequest(name=op.name, tenant="acme"))).operation
        result = wrappers_pb2.StringValue()
        assert done.done and done.response.Unpack(result) and result.value == "3 documents"
        assert done.update_time.ToNanoseconds() >= done.create_time.ToNanoseconds()
        listed = await stub.ListOperations(pb.ListOperationsRequest(tenant="acme"))
        assert [o.name for o in listed.operations] == [op.name]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetOperation(pb.GetOperationRequest(name=op.name, tenant="other"))
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_servicer_reports_failures_as_error_details():
    ops = Operations("retrieval")

    async def boom(report):
        raise RuntimeError("db password is hunter2")

    async with running_server([operations_spec(ops, CONVERTERS)]) as (_, channel):
        stub = pb_grpc.OperationsServiceStub(channel)
        op = ops.start("retrieval.ingest", "acme", boom)
        await _settle(ops, op.name)
        done = (await stub.GetOperation(pb.GetOperationRequest(name=op.name, tenant="acme"))).operation
        assert done.done and done.error.code == "INTERNAL" and "hunter2" not in done.error.message
        gate = asyncio.Event()
        running = ops.start("retrieval.ingest", "acme", lambda report: _ingest(report, gate=gate))
        await stub.CancelOperation(pb.CancelOperationRequest(name=running.name, tenant="acme"))
        await _settle(ops, running.name)
        cancelled = (await stub.GetOperation(pb.GetOperationRequest(name=running.name, tenant="acme"))).operation
        assert cancelled.error.code == "CANCELLED"
