"""The servicer in-process over real gRPC (production interceptors), the domain on scripted fakes."""

from __future__ import annotations

import grpc
import pytest
from genai.agent.v1 import agent_service_pb2 as pb
from genai.agent.v1 import agent_service_pb2_grpc as pb_grpc
from genai_agent.servicer import service_spec
from genai_core.deferred import Deferred
from genai_core.status import field_violations
from genai_core.testing import running_server
from google.protobuf import json_format

from services.agent.tests.fakes import call


@pytest.fixture
async def stub(harness):
    domain = Deferred("agent")
    domain.set(harness.domain)
    async with running_server([service_spec(domain)]) as (_, channel):
        yield pb_grpc.AgentServiceStub(channel)


def human(text: str) -> pb.StateValues:
    return pb.StateValues(messages=[pb.Message(type="human", content=text)])


async def test_info_assistants_and_tools(stub):
    info = await stub.GetInfo(pb.GetInfoRequest())
    assert info.engine == "langgraph" and list(info.graph_ids) == ["react", "rag", "plan_execute"]
    assert info.checkpointer == "sqlite" and info.default_max_steps == 25
    listed = await stub.ListAssistants(pb.ListAssistantsRequest(limit=50))
    assert [a.name for a in listed.assistants] == ["plan_execute", "rag", "react"] and listed.total_count == 3
    assert all(a.builtin and a.metadata["created_by"] == "system" for a in listed.assistants)
    by_graph = await stub.GetAssistant(pb.GetAssistantRequest(assistant_id="react"))
    assert by_graph.assistant.spec.first_tool_choice == "required"
    tools = await stub.ListTools(pb.ListToolsRequest())
    assert {t.name for t in tools.tools} == {"calculator", "search", "token_count", "current_time", "http_get"}
    assert {t.name: t.requires_approval for t in tools.tools}["http_get"]
    scoped = await stub.ListTools(pb.ListToolsRequest(assistant_id="rag"))
    assert [t.name for t in scoped.tools] == ["search"]
    spec = pb.AgentSpec(tools=["calculator"], approval_tools=["calculator"], system_prompt="Be brief.")
    created = await stub.CreateAssistant(pb.CreateAssistantRequest(tenant="acme", graph_id="react", name="calc",
                                                                   spec=spec))
    assert created.assistant.version == 1 and not created.assistant.builtin
    updated = await stub.UpdateAssistant(pb.UpdateAssistantRequest(tenant="acme", assistant_id=created.assistant.assistant_id,
                                                                   description="sums"))
    assert updated.assistant.version == 2 and updated.assistant.spec.system_prompt == "Be brief."
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.GetAssistant(pb.GetAssistantRequest(tenant="other", assistant_id="calc"))
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.CreateAssistant(pb.CreateAssistantRequest(graph_id="react", spec=pb.AgentSpec(tools=["nope"])))
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(failed.value)[0][0] == "spec.tools[0]"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=listed.assistants[0].assistant_id))
    assert failed.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_stream_run_events_and_state(stub, harness):
    harness.chat.script = [call("calculator", expression="2+3"), "Five."]
    thread = (await stub.CreateThread(pb.CreateThreadRequest(metadata=json_format.ParseDict({"user": "u1"},
                                                                                              pb.Thread().metadata)))).thread
    request = pb.StreamRunRequest(run=pb.RunSpec(thread_id=thread.thread_id, assistant_id="react", input=human("2+3?")),
                                  stream_modes=[pb.STREAM_MODE_VALUES, pb.STREAM_MODE_MESSAGES, pb.STREAM_MODE_TOOLS])
    events = [r.event async for r in stub.StreamRun(request)]
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "metadata" and kinds[-1] == "end" and "update" not in kinds and "node_start" not in kinds
    assert events[-1].end.status == pb.RUN_STATUS_SUCCESS
    assert [e.tool_result.content for e in events if e.HasField("tool_result")] == ["5"]
    chunks = [e.message.message for e in events if e.HasField("message") and e.message.message.chunk]
    assert "".join(c.content for c in chunks) == "Five."
    last_values = [e.values for e in events if e.HasField("values")][-1]
    assert [m.type for m in last_values.messages] == ["human", "ai", "tool", "ai"]
    assert last_values.messages[1].tool_calls[0].args["expression"] == "2+3"
    state = (await stub.GetThreadState(pb.GetThreadStateRequest(thread_id=thread.thread_id))).state
    assert state.checkpoint.checkpoint_id and state.checkpoint.thread_id == thread.thread_id
    assert state.metadata["graph_id"] == "react"
    history = await stub.ListCheckpoints(pb.ListCheckpointsRequest(thread_id=thread.thread_id, limit=3))
    assert len(history.states) == 3 and not history.states[0].values.messages
    got = (await stub.GetThread(pb.GetThreadRequest(thread_id=thread.thread_id))).thread
    assert got.status == pb.THREAD_STATUS_IDLE and got.metadata["user"] == "u1" and len(got.values.messages) == 4
    runs = await stub.ListRuns(pb.ListRunsRequest(thread_id=thread.thread_id))
    run = runs.runs[0]
    assert run.status == pb.RUN_STATUS_SUCCESS and run.usage.total_tokens == 26 and run.steps >= 3
    assert run.timings.model_duration.ToNanoseconds() > 0 and run.last_sequence == events[-1].sequence
    rejoined = [r.event async for r in stub.JoinRun(pb.JoinRunRequest(
        thread_id=thread.thread_id, run_id=run.run_id, after_sequence=events[-3].sequence))]
    assert [e.sequence for e in rejoined] == [e.sequence for e in events[-2:]] or rejoined[-1].HasField("end")


async def test_background_run_wait_cancel_and_errors(stub, harness):
    harness.chat.script = ["all good"]
    created = await stub.CreateRun(pb.CreateRunRequest(run=pb.RunSpec(assistant_id="react", input=human("hi"),
                                                                      keep_thread=True)))
    assert created.run.status == pb.RUN_STATUS_PENDING
    waited = await stub.WaitRun(pb.WaitRunRequest(thread_id=created.run.thread_id, run_id=created.run.run_id))
    assert waited.run.status == pb.RUN_STATUS_SUCCESS and waited.values.messages[-1].content == "all good"
    for bad, code, field in [
        (pb.RunSpec(assistant_id="react", input=human("x"), multitask_strategy=99), grpc.StatusCode.INVALID_ARGUMENT,
         "run.multitask_strategy"),
        (pb.RunSpec(assistant_id="react", input=pb.StateValues(messages=[pb.Message(type="robot")])),
         grpc.StatusCode.INVALID_ARGUMENT, "run.input.messages[0].type"),
        (pb.RunSpec(assistant_id="ghost", input=human("x")), grpc.StatusCode.NOT_FOUND, None),
        (pb.RunSpec(assistant_id="react", thread_id="nope", input=human("x")), grpc.StatusCode.NOT_FOUND, None),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.CreateRun(pb.CreateRunRequest(run=bad))
        assert failed.value.code() is code
        if field:
            assert field_violations(failed.value)[0][0] == field
    harness.chat.delay, harness.chat.script = 0.05, ["slow " * 100]
    thread = (await stub.CreateThread(pb.CreateThreadRequest())).thread
    slow = await stub.CreateRun(pb.CreateRunRequest(run=pb.RunSpec(thread_id=thread.thread_id, assistant_id="react",
                                                                   input=human("talk"))))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.CreateRun(pb.CreateRunRequest(run=pb.RunSpec(thread_id=thread.thread_id, assistant_id="react",
                                                                input=human("again"))))
    assert failed.value.code() is grpc.StatusCode.ABORTED
    cancelled = await stub.CancelRun(pb.CancelRunRequest(thread_id=thread.thread_id, run_id=slow.run.run_id, wait=True))
    assert cancelled.run.status == pb.RUN_STATUS_CANCELLED
    await stub.DeleteRun(pb.DeleteRunRequest(thread_id=thread.thread_id, run_id=slow.run.run_id))
    await stub.DeleteThread(pb.DeleteThreadRequest(thread_id=thread.thread_id))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.GetThread(pb.GetThreadRequest(thread_id=thread.thread_id))
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND


async def test_closing_a_stream_cancels_its_run(stub, harness):
    harness.chat.delay, harness.chat.script = 0.05, ["slow " * 100]
    thread = (await stub.CreateThread(pb.CreateThreadRequest())).thread
    call_ = stub.StreamRun(pb.StreamRunRequest(
        run=pb.RunSpec(thread_id=thread.thread_id, assistant_id="react", input=human("talk")),
        stream_modes=[pb.STREAM_MODE_MESSAGES]))
    seen = 0
    async for reply in call_:
        if reply.event.HasField("message"):
            seen += 1
            if seen == 2:
                break
    call_.cancel()
    run = None
    for _ in range(100):
        runs = (await stub.ListRuns(pb.ListRunsRequest(thread_id=thread.thread_id))).runs
        run = runs[0]
        if run.status == pb.RUN_STATUS_CANCELLED:
            break
        await __import__("asyncio").sleep(0.05)
    assert run.status == pb.RUN_STATUS_CANCELLED


async def test_resume_with_typed_decisions(stub, harness):
    spec = pb.AgentSpec(tools=["calculator"], approval_tools=["calculator"], first_tool_choice="required")
    await stub.CreateAssistant(pb.CreateAssistantRequest(graph_id="react", name="careful", spec=spec))
    thread = (await stub.CreateThread(pb.CreateThreadRequest())).thread
    harness.chat.script = [call("calculator", expression="3*3"), "nine"]
    first = await stub.CreateRun(pb.CreateRunRequest(run=pb.RunSpec(thread_id=thread.thread_id, assistant_id="careful",
                                                                    input=human("3*3"))))
    waited = await stub.WaitRun(pb.WaitRunRequest(thread_id=thread.thread_id, run_id=first.run.run_id))
    assert waited.run.status == pb.RUN_STATUS_INTERRUPTED
    (interrupt,) = waited.values.interrupts
    assert interrupt.approval.tool_calls[0].args["expression"] == "3*3"
    assert waited.run.interrupts[0].id == interrupt.id
    decision = pb.ToolDecision(edit=pb.EditDecision(args=json_format.ParseDict({"expression": "4*4"},
                                                                              pb.EditDecision().args)))
    second = await stub.CreateRun(pb.CreateRunRequest(run=pb.RunSpec(
        thread_id=thread.thread_id, assistant_id="careful",
        command=pb.RunCommand(decisions=pb.ToolDecisions(decisions=[decision])))))
    done = await stub.WaitRun(pb.WaitRunRequest(thread_id=thread.thread_id, run_id=second.run.run_id))
    assert done.run.status == pb.RUN_STATUS_SUCCESS
    assert [m.content for m in done.values.messages if m.type == "tool"] == ["16"]
