"""Runs with a scripted model: approval and resume (also after a restart), errors as tool results, the step
limit, cancel, one active run per thread, stateless runs, tenants, joining and waiting."""

from __future__ import annotations

import asyncio

import pytest
from genai_agent.types import (
    AgentSpec,
    Command,
    ErrorEvent,
    MultitaskStrategy,
    Page,
    RunEnd,
    RunSpec,
    RunStatus,
    StateValues,
    StreamMode,
    ThreadStatus,
    ToolResult,
)
from genai_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from services.agent.tests.conftest import open_harness
from services.agent.tests.fakes import call

T = "default"


def ask(text: str, assistant: str = "react", **kwargs) -> RunSpec:
    return RunSpec(assistant_id=assistant, input=StateValues((HumanMessage(text),)), **kwargs)


def resume(thread_id: str, answer, assistant: str = "react") -> RunSpec:
    return RunSpec(assistant_id=assistant, thread_id=thread_id, command=Command(resume=answer, has_resume=True))


async def collect(iterator) -> list:
    return [e async for e in await iterator]


async def approving_assistant(h, name: str = "careful"):
    spec = AgentSpec(tools=("calculator",), approval_tools=("calculator",), first_tool_choice="required")
    return await h.domain.assistants.create(T, graph_id="react", spec=spec, name=name)


async def test_approval_interrupts_then_approve_runs_the_tool(harness):
    h = harness
    await approving_assistant(h)
    thread = await h.domain.threads.create(T)
    h.chat.script = [call("calculator", expression="6*7"), "It is 42."]
    events = await collect(h.domain.runs.stream(T, ask("6*7?", "careful", thread_id=thread.thread_id),
                                                 frozenset(StreamMode)))
    assert events[-1].payload == RunEnd(RunStatus.INTERRUPTED)
    assert not [e for e in events if isinstance(e.payload, ToolResult)]  # nothing ran before approval
    run = (await h.domain.runs.list(T, thread.thread_id, Page()))[0]
    assert run.status is RunStatus.INTERRUPTED
    (interrupt,) = run.interrupts
    assert interrupt.approval.tool_calls[0].name == "calculator"
    assert interrupt.approval.tool_calls[0].args == {"expression": "6*7"}
    assert (await h.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.INTERRUPTED
    state = await h.domain.threads.state(T, thread.thread_id)
    assert state.next == ("tools",) and state.values.interrupts[0].id == interrupt.id

    second = await h.domain.runs.create(T, resume(thread.thread_id, "approve", "careful"))
    done, values = await h.domain.runs.wait(T, thread.thread_id, second.run_id)
    assert done.status is RunStatus.SUCCESS
    tool = [m for m in values.messages if isinstance(m, ToolMessage)]
    assert tool[0].content == "42" and values.messages[-1].content == "It is 42."
    assert (await h.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.IDLE


async def test_deny_and_edit(harness):
    h = harness
    await approving_assistant(h)
    thread = await h.domain.threads.create(T)
    h.chat.script = [[call("calculator", expression="1+1"), call("calculator", expression="2+2")], "ok"]
    first = await h.domain.runs.create(T, ask("sums", "careful", thread_id=thread.thread_id))
    await h.domain.runs.wait(T, thread.thread_id, first.run_id)
    answer = {"decisions": [{"type": "deny", "message": "not now"}, {"type": "edit", "args": {"expression": "10*10"}}]}
    second = await h.domain.runs.create(T, resume(thread.thread_id, answer, "careful"))
    run, values = await h.domain.runs.wait(T, thread.thread_id, second.run_id)
    assert run.status is RunStatus.SUCCESS
    tools = {m.tool_call_id: m for m in values.messages if isinstance(m, ToolMessage)}
    ai = next(m for m in values.messages if isinstance(m, AIMessage) and m.tool_calls)
    denied, edited = ai.tool_calls
    assert tools[denied["id"]].status == "error" and "not now" in tools[denied["id"]].content
    assert tools[edited["id"]].content == "100"
    assert edited["args"] == {"expression": "10*10"}  # the history shows what ran


async def test_bad_resume_is_rejected_before_the_run(harness):
    h = harness
    await approving_assistant(h)
    thread = await h.domain.threads.create(T)
    with pytest.raises(FailedPrecondition, match="no interrupt to resume"):
        await h.domain.runs.create(T, resume(thread.thread_id, "approve", "careful"))
    h.chat.script = [call("calculator", expression="1")]
    first = await h.domain.runs.create(T, ask("x", "careful", thread_id=thread.thread_id))
    await h.domain.runs.wait(T, thread.thread_id, first.run_id)
    with pytest.raises(InvalidArgument, match="decision"):
        await h.domain.runs.create(T, resume(thread.thread_id, {"type": "maybe"}, "careful"))
    with pytest.raises(InvalidArgument, match="one decision per pending tool call"):
        await h.domain.runs.create(T, resume(thread.thread_id, ["approve", "approve"], "careful"))


async def test_a_tool_that_raises_gives_its_error_to_the_model(harness):
    h = harness
    h.chat.script = [call("calculator", expression="__import__('os').system('true')"),
                     lambda request: f"saw: {request.messages[-1].content}"]
    run = await h.domain.runs.create(T, ask("break it"))
    done, values = await h.domain.runs.wait(T, run.thread_id, run.run_id)
    assert done.status is RunStatus.SUCCESS
    tool = next(m for m in values.messages if isinstance(m, ToolMessage))
    assert tool.status == "error" and "is not allowed" in tool.content
    assert values.messages[-1].content.startswith("saw: break it") and "tool says: Error:" in values.messages[-1].content


async def test_unknown_tool_called_by_the_model_is_an_error_result(harness):
    h = harness
    h.chat.script = [call("launch_rockets", target="moon"), "fine"]
    run = await h.domain.runs.create(T, ask("go"))
    done, values = await h.domain.runs.wait(T, run.thread_id, run.run_id)
    assert done.status is RunStatus.SUCCESS
    assert "there is no tool 'launch_rockets'" in next(m for m in values.messages if isinstance(m, ToolMessage)).content


async def test_step_limit_ends_the_run_with_a_clear_error(harness):
    h = harness
    h.chat.script = [call("calculator", expression="1+1") for _ in range(20)]
    thread = await h.domain.threads.create(T)
    events = await collect(h.domain.runs.stream(T, ask("loop", thread_id=thread.thread_id, max_steps=4),
                                                 frozenset({StreamMode.VALUES})))
    error = next(e.payload.error for e in events if isinstance(e.payload, ErrorEvent))
    assert error.reason == "STEP_LIMIT_REACHED" and "step limit of 4" in error.message
    assert events[-1].payload == RunEnd(RunStatus.ERROR)
    run = (await h.domain.runs.list(T, thread.thread_id, Page()))[0]
    assert run.status is RunStatus.ERROR and run.error.code == "RESOURCE_EXHAUSTED"
    assert (await h.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.ERROR
    with pytest.raises(InvalidArgument, match="max_steps"):
        await h.domain.runs.create(T, ask("x", max_steps=10_000))


async def test_cancel_mid_run(harness):
    h = harness
    h.chat.delay = 0.05
    h.chat.script = ["word " * 200]
    thread = await h.domain.threads.create(T)
    run = await h.domain.runs.create(T, ask("talk", thread_id=thread.thread_id))
    events = await h.domain.runs.join(T, thread.thread_id, run.run_id, modes=frozenset({StreamMode.MESSAGES}))
    seen = 0
    async for event in events:
        if type(event.payload).__name__ == "MessageEvent":
            seen += 1
            if seen == 3:
                cancelled = await h.domain.runs.cancel(T, thread.thread_id, run.run_id, wait=True)
        if isinstance(event.payload, RunEnd):
            assert event.payload.status is RunStatus.CANCELLED
    assert cancelled.status is RunStatus.CANCELLED
    assert (await h.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.IDLE


async def test_one_active_run_per_thread(harness):
    h = harness
    h.chat.delay = 0.02
    h.chat.script = ["a b c d e f", "second", "third"]
    thread = await h.domain.threads.create(T)
    first = await h.domain.runs.create(T, ask("1", thread_id=thread.thread_id))
    with pytest.raises(Aborted, match="already has an active run"):
        await h.domain.runs.create(T, ask("2", thread_id=thread.thread_id))
    with pytest.raises(Unimplemented):
        await h.domain.runs.create(T, ask("2", thread_id=thread.thread_id, multitask_strategy=MultitaskStrategy.ROLLBACK))
    queued = await h.domain.runs.create(T, ask("2", thread_id=thread.thread_id,
                                                multitask_strategy=MultitaskStrategy.ENQUEUE))
    assert queued.status is RunStatus.PENDING
    second, values = await h.domain.runs.wait(T, thread.thread_id, queued.run_id)
    assert second.status is RunStatus.SUCCESS
    assert (await h.domain.runs.get(T, thread.thread_id, first.run_id)).status is RunStatus.SUCCESS
    assert [m.content for m in values.messages if isinstance(m, AIMessage)][-1] == "second"
    # interrupt: the active run is cancelled, the new one runs
    h.chat.script = ["x " * 100, "fresh"]
    third = await h.domain.runs.create(T, ask("3", thread_id=thread.thread_id))
    await asyncio.sleep(0.05)
    fourth = await h.domain.runs.create(T, ask("4", thread_id=thread.thread_id,
                                               multitask_strategy=MultitaskStrategy.INTERRUPT))
    await h.domain.runs.wait(T, thread.thread_id, fourth.run_id)
    assert (await h.domain.runs.get(T, thread.thread_id, third.run_id)).status is RunStatus.CANCELLED


async def test_stateless_run_deletes_its_thread(harness):
    h = harness
    h.chat.script = ["hello there"]
    run = await h.domain.runs.create(T, ask("hi"))
    done, values = await h.domain.runs.wait(T, "", run.run_id)
    assert done.status is RunStatus.SUCCESS and values.messages[-1].content == "hello there"
    assert await h.domain.threads.find(T, run.thread_id) is None


async def test_unknown_things_are_not_found(harness):
    h = harness
    with pytest.raises(NotFound, match="no assistant 'nobody'"):
        await h.domain.runs.create(T, ask("x", "nobody"))
    with pytest.raises(NotFound, match="no thread"):
        await h.domain.runs.create(T, ask("x", thread_id="missing"))
    with pytest.raises(InvalidArgument, match="unknown tool 'teleport'"):
        await h.domain.assistants.create(T, graph_id="react", spec=AgentSpec(tools=("teleport",)))
    with pytest.raises(InvalidArgument, match="unknown graph"):
        await h.domain.assistants.create(T, graph_id="nope", spec=AgentSpec())
    with pytest.raises(InvalidArgument, match="thread_id"):
        await h.domain.threads.create(T, "bad/id")


async def test_tenants_do_not_see_each_other(harness):
    h = harness
    mine = await h.domain.assistants.create("acme", graph_id="react", spec=AgentSpec(tools=("calculator",)), name="mine")
    thread = await h.domain.threads.create("acme", "shared-name")
    with pytest.raises(NotFound):
        await h.domain.threads.get("globex", thread.thread_id)
    with pytest.raises(NotFound):
        await h.domain.assistants.resolve("globex", mine.assistant_id)
    with pytest.raises(NotFound):
        await h.domain.runs.create("globex", ask("x", mine.assistant_id))
    # the same thread id in another tenant is another thread
    other = await h.domain.threads.create("globex", "shared-name")
    h.chat.script = ["for acme", "for globex"]
    a = await h.domain.runs.create("acme", ask("a", thread_id=thread.thread_id))
    await h.domain.runs.wait("acme", thread.thread_id, a.run_id)
    b = await h.domain.runs.create("globex", ask("b", thread_id=other.thread_id))
    _, values = await h.domain.runs.wait("globex", other.thread_id, b.run_id)
    assert [m.content for m in values.messages] == ["b", "for globex"]
    assert (await h.domain.assistants.search("globex", Page(limit=50)))[1] == 3  # only the built-ins
    with pytest.raises(NotFound):
        await h.domain.runs.get("globex", thread.thread_id, a.run_id)


async def test_join_after_a_sequence_and_after_the_log_is_gone(harness):
    h = harness
    h.chat.script = ["one two three"]
    thread = await h.domain.threads.create(T)
    run = await h.domain.runs.create(T, ask("count", thread_id=thread.thread_id))
    all_events = [e async for e in await h.domain.runs.join(T, thread.thread_id, run.run_id)]
    later = [e async for e in await h.domain.runs.join(T, thread.thread_id, run.run_id, after=3)]
    assert [e.sequence for e in later] == [e.sequence for e in all_events if e.sequence > 3]
    h.domain.runs._logs.drop(run.run_id)
    replayed = [e async for e in await h.domain.runs.join(T, thread.thread_id, run.run_id)]
    assert type(replayed[0].payload).__name__ == "RunMetadata"
    assert replayed[-1].payload == RunEnd(RunStatus.SUCCESS)
    assert replayed[-2].payload.messages[-1].content == "one two three"


async def test_interrupted_run_resumes_after_a_restart_and_lost_runs_fail(tmp_path):
    h = await open_harness(tmp_path)
    await approving_assistant(h)
    thread = await h.domain.threads.create(T)
    h.chat.script = [call("calculator", expression="2**10")]
    first = await h.domain.runs.create(T, ask("power", "careful", thread_id=thread.thread_id))
    await h.domain.runs.wait(T, thread.thread_id, first.run_id)
    # a run left "running" by a crashed process
    h.chat.delay, h.chat.script = 0.5, ["slow " * 50]
    other = await h.domain.threads.create(T)
    lost = await h.domain.runs.create(T, ask("slow", thread_id=other.thread_id))
    await asyncio.sleep(0.1)
    await h.store.close()  # the process dies: no graceful close of the runs

    h2 = await open_harness(tmp_path)
    try:
        dead = await h2.domain.runs.get(T, other.thread_id, lost.run_id)
        assert dead.status is RunStatus.ERROR and dead.error.reason == "SERVICE_RESTARTED"
        assert (await h2.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.INTERRUPTED
        h2.chat.script = ["1024 it is."]
        second = await h2.domain.runs.create(T, resume(thread.thread_id, "approve", "careful"))
        run, values = await h2.domain.runs.wait(T, thread.thread_id, second.run_id)
        assert run.status is RunStatus.SUCCESS
        assert [m.content for m in values.messages if isinstance(m, ToolMessage)] == ["1024"]
        history = await h2.domain.threads.history(T, thread.thread_id, limit=50)
        assert len(history) >= 4 and history[0].checkpoint.checkpoint_id
        assert {s.metadata.get("run_id") for s in history} >= {first.run_id, second.run_id}
    finally:
        await h2.domain.runs.close()
        await h2.store.close()
        for task in [t for t in asyncio.all_tasks() if t.get_name() == f"run-{lost.run_id}"]:
            task.cancel()


async def test_breakpoints_and_a_thread_keeps_its_graph(harness):
    h = harness
    thread = await h.domain.threads.create(T)
    h.chat.script = [call("calculator", expression="1+2"), "3"]
    first = await h.domain.runs.create(T, ask("1+2", thread_id=thread.thread_id, interrupt_before=("*",)))
    run, _ = await h.domain.runs.wait(T, thread.thread_id, first.run_id)
    assert run.status is RunStatus.INTERRUPTED  # stopped before the first node
    assert (await h.domain.threads.state(T, thread.thread_id)).next == ("agent",)
    second = await h.domain.runs.create(T, RunSpec("react", thread.thread_id, interrupt_after=("tools",)))
    run, values = await h.domain.runs.wait(T, thread.thread_id, second.run_id)
    assert run.status is RunStatus.INTERRUPTED and isinstance(values.messages[-1], ToolMessage)
    third = await h.domain.runs.create(T, RunSpec("react", thread.thread_id))  # no input: continue
    run, values = await h.domain.runs.wait(T, thread.thread_id, third.run_id)
    assert run.status is RunStatus.SUCCESS and values.messages[-1].content == "3"
    with pytest.raises(InvalidArgument, match="runs the react graph"):
        await h.domain.runs.create(T, ask("x", "rag", thread_id=thread.thread_id))


async def test_a_run_past_the_run_timeout_ends_with_status_timeout(tmp_path):
    h = await open_harness(tmp_path, run_timeout=0.3)
    try:
        h.chat.delay, h.chat.script = 0.05, ["slow " * 100]
        thread = await h.domain.threads.create(T)
        run = await h.domain.runs.create(T, ask("talk", thread_id=thread.thread_id))
        done, _ = await h.domain.runs.wait(T, thread.thread_id, run.run_id)
        assert done.status is RunStatus.TIMEOUT and done.error.reason == "RUN_TIMEOUT"
        assert "0.3 s" in done.error.message
        assert (await h.domain.threads.get(T, thread.thread_id)).status is ThreadStatus.ERROR
    finally:
        await h.domain.runs.close()
        await h.store.close()
