"""The react graph with a scripted model: tool calls, errors as results, step limit, events, persistence."""

from __future__ import annotations

from genai_agent.types import (
    MessageEvent,
    NodeStart,
    NodeUpdate,
    RunEnd,
    RunMetadata,
    RunSpec,
    RunStatus,
    StateValues,
    StreamMode,
    ThreadStatus,
    ToolCallEvent,
    ToolResult,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from services.agent.tests.fakes import call


def ask(text: str, **kwargs) -> RunSpec:
    return RunSpec(assistant_id=kwargs.pop("assistant_id", "react"), input=StateValues((HumanMessage(text),)), **kwargs)


async def test_react_calls_the_calculator_and_answers(harness):
    harness.chat.script = [call("calculator", expression="37 * 91"), "The answer is 3367."]
    thread = await harness.domain.threads.create("default")
    events = [e async for e in await harness.domain.runs.stream(
        "default", ask("What is 37*91?", thread_id=thread.thread_id), frozenset(StreamMode))]
    kinds = [type(e.payload).__name__ for e in events]
    assert kinds[0] == "RunMetadata" and kinds[-1] == "RunEnd"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].payload == RunEnd(RunStatus.SUCCESS)
    tool_calls = [e.payload for e in events if isinstance(e.payload, ToolCallEvent)]
    results = [e.payload for e in events if isinstance(e.payload, ToolResult)]
    assert tool_calls[0].tool_call.name == "calculator"
    assert results[0].content == "3367" and not results[0].is_error
    assert [e.payload.node for e in events if isinstance(e.payload, NodeStart)] == ["agent", "tools", "agent"]
    tokens = "".join(str(e.payload.message.content) for e in events
                     if isinstance(e.payload, MessageEvent) and e.payload.node == "agent")
    assert "The answer is 3367." in tokens
    final = [e.payload for e in events if isinstance(e.payload, StateValues)][-1]
    assert [type(m) for m in final.messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert final.messages[-1].content == "The answer is 3367."
    # the first model call was forced to call a tool (the react assistant's first_tool_choice), the second not
    assert [r.tool_choice for r in harness.chat.requests] == ["required", "auto"]
    run = (await harness.domain.runs.list("default", thread.thread_id, page=__import__("genai_agent.types", fromlist=["Page"]).Page()))[0]
    assert run.status is RunStatus.SUCCESS and run.steps >= 3
    assert run.usage.prompt_tokens == 20 and run.timings.model_s > 0
    assert (await harness.domain.threads.get("default", thread.thread_id)).status is ThreadStatus.IDLE
    updates = [e.payload.node for e in events if isinstance(e.payload, NodeUpdate)]
    assert updates == ["agent", "tools", "agent"]
    assert isinstance(events[0].payload, RunMetadata)


async def test_max_tool_rounds_then_the_model_answers_from_the_facts(harness):
    from genai_agent.types import AgentSpec

    spec = AgentSpec(tools=("calculator", "search"), first_tool_choice="required", max_tool_rounds=2)
    await harness.domain.assistants.create("default", graph_id="react", spec=spec, name="small")
    harness.retrieval.docs = {"default": {}}
    harness.chat.script = [call("calculator", expression="2+2"), call("calculator", expression="4*10"), "40"]
    run = await harness.domain.runs.create("default", ask("What is (2+2)*10?", assistant_id="small"))
    done, values = await harness.domain.runs.wait("default", "", run.run_id)
    assert done.status is RunStatus.SUCCESS and values.messages[-1].content == "40"
    first, second, last = harness.chat.requests
    assert (first.tool_choice, second.tool_choice) == ("required", "auto")
    assert not last.tools and len(last.messages) == 1  # no tools: one message of facts
    assert last.messages[0].content == ("What is (2+2)*10?\nThe calculator tool says: 4\nThe calculator tool says: 40\n"
                                        "Answer in one sentence using what the tools say.")
