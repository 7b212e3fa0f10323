"""The rag and plan_execute graphs with scripted models and a fake retrieval service."""

from __future__ import annotations

from genai_agent.types import AgentSpec, Grader, MessageEvent, NodeStart, RunSpec, RunStatus, StateValues, StreamMode
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from services.agent.tests.fakes import call

T = "acme"
DOCS = {T: {"handbook": [("vienna.pdf", "Vienna is the capital of Austria."),
                         ("runbook.md", "Run make test to execute the whole test suite.")]}}


def ask(text: str, assistant: str, **kwargs) -> RunSpec:
    kwargs.setdefault("keep_thread", True)  # stateless runs, but keep the thread to inspect it afterwards
    return RunSpec(assistant_id=assistant, input=StateValues((HumanMessage(text),)), **kwargs)


async def test_rag_retrieves_grades_and_answers_with_citations(harness):
    h = harness
    h.retrieval.docs = DOCS
    # query (forced search call), one grade per context (constrained JSON, not streamed)
    h.chat.script = [call("search", query="capital of Austria"), {"relevant": "yes"}, {"relevant": "no"}]
    run = await h.domain.runs.create(T, ask("What is the capital of Austria?", "rag",
                                            configurable={"collection": "handbook"}, metadata={"k": 1}))
    events = [e async for e in await h.domain.runs.join(T, "", run.run_id)]
    done, values = await h.domain.runs.wait(T, "", run.run_id)
    assert done.status is RunStatus.SUCCESS
    assert [e.payload.node for e in events if isinstance(e.payload, NodeStart)] == [
        "query", "retrieve", "grade", "answer"]
    assert h.chat.requests[0].tool_choice == "search"  # forced: even a weak model emits the call
    assert [r.json_schema is not None for r in h.chat.requests[1:]] == [True, True]
    assert h.retrieval.searches[0] == (T, "handbook", "capital of Austria")
    answer = values.messages[-1]
    assert isinstance(answer, AIMessage) and "Vienna is the capital of Austria." in answer.content
    assert answer.response_metadata["citations"][0]["document_id"] == "vienna.pdf"
    assert values.values["citations"][0]["document_id"] == "vienna.pdf"
    assert [c["document_id"] for c in values.values["relevant"]] == ["vienna.pdf"]
    # the answer's tokens stream; the graders' do not
    streamed = [e.payload for e in events if isinstance(e.payload, MessageEvent)]
    assert {m.node for m in streamed} >= {"answer"} and "grade" not in {m.node for m in streamed}


async def test_rag_rewrites_once_when_nothing_is_relevant(harness):
    h = harness
    h.retrieval.docs = DOCS
    h.chat.script = [call("search", query="tests"), {"relevant": "no"}, {"relevant": "no"},
                     "How do I run the test suite?",  # the rewrite
                     call("search", query="run test suite"), {"relevant": "no"}, {"relevant": "no"}]
    run = await h.domain.runs.create(T, ask("tests?", "rag", configurable={"collection": "handbook"}))
    events = [e async for e in await h.domain.runs.join(T, "", run.run_id)]
    _, values = await h.domain.runs.wait(T, "", run.run_id)
    nodes = [e.payload.node for e in events if isinstance(e.payload, NodeStart)]
    assert nodes == ["query", "retrieve", "grade", "rewrite", "query", "retrieve", "grade", "answer"]
    assert values.values["question"] == "How do I run the test suite?" and values.values["rewritten"] is True
    assert "make test" in values.messages[-1].content  # answered anyway, after one rewrite


async def test_rag_score_grader_and_missing_collection(harness):
    h = harness
    h.retrieval.docs = DOCS
    spec = AgentSpec(tools=("search",), collection="handbook", grader=Grader.SCORE, min_score=0.5)
    await h.domain.assistants.create(T, graph_id="rag", spec=spec, name="docs")
    h.chat.script = [call("search", query="capital of Austria")]
    run = await h.domain.runs.create(T, ask("capital of Austria", "docs"))
    _, values = await h.domain.runs.wait(T, "", run.run_id)
    assert [c["document_id"] for c in values.values["relevant"]] == ["vienna.pdf"]
    assert len(h.chat.requests) == 1  # no model grading
    failed = await h.domain.runs.create(T, ask("anything", "rag"))
    done, _ = await h.domain.runs.wait(T, "", failed.run_id)
    assert done.status is RunStatus.ERROR and "needs a collection" in done.error.message
    assert done.error.code == "INVALID_ARGUMENT"


async def test_rag_second_turn_asks_the_new_question(harness):
    h = harness
    h.retrieval.docs = DOCS
    thread = await h.domain.threads.create(T)
    h.chat.script = [call("search", query="capital"), {"relevant": "yes"}, {"relevant": "yes"},
                     call("search", query="tests"), {"relevant": "yes"}, {"relevant": "yes"}]
    for question in ("capital of Austria?", "how to run the tests?"):
        run = await h.domain.runs.create(T, ask(question, "rag", thread_id=thread.thread_id,
                                                configurable={"collection": "handbook"}))
        _, values = await h.domain.runs.wait(T, thread.thread_id, run.run_id)
        assert values.values["question"] == question
    assert [type(m).__name__ for m in values.messages].count("HumanMessage") == 2


async def test_plan_execute_runs_each_step_with_a_sub_agent(harness):
    h = harness
    h.chat.script = [
        {"steps": ["compute 12*12", "add 6 to that"]},  # the plan
        call("calculator", expression="12*12"), "144",  # step 1: forced tool call, then its result
        call("calculator", expression="144+6"), "150",  # step 2
        "The result is 150.",  # the final answer
    ]
    thread = await h.domain.threads.create(T)
    run = await h.domain.runs.create(T, ask("Compute 12*12, then add 6.", "plan_execute", thread_id=thread.thread_id))
    events = [e async for e in await h.domain.runs.join(T, thread.thread_id, run.run_id,
                                                        modes=frozenset(StreamMode))]
    done, values = await h.domain.runs.wait(T, thread.thread_id, run.run_id)
    assert done.status is RunStatus.SUCCESS, done.error
    assert values.values["plan"] == ["compute 12*12", "add 6 to that"]
    assert [s["result"] for s in values.values["past_steps"]] == ["144", "150"]
    assert values.messages[-1].content == "The result is 150."
    assert [type(m) for m in values.messages] == [HumanMessage, AIMessage]  # sub-agent turns stay in the subgraph
    assert [e.payload.node for e in events if isinstance(e.payload, NodeStart)] == [
        "planner", "execute", "execute", "respond"]
    assert [r.json_schema is not None for r in h.chat.requests][:1] == [True]
    assert not [m for m in values.messages if isinstance(m, ToolMessage)]
