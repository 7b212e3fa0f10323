"""``react``: the tool-calling loop. The model answers or calls tools; the tools node runs them (after a
human approved those that need it) and the model goes again, until it answers or the step limit ends the
run. LangGraph is the loop: two nodes, ``tools_condition`` between them, the recursion limit as the bound.

The first model call of a turn uses the assistant's ``first_tool_choice`` ("required" or a tool name
forces a tool call, which lets a small model that rarely picks tools on its own still use them); later
calls are "auto", until ``max_tool_rounds`` rounds of tool calls have run in the turn: then the model
must answer, without tools, from one message that states the question and what each tool said. A
small model asked that way answers; shown the tool-call history instead it calls the same tool again and
again, or writes tool-call markup as its answer. (Assistants for strong models leave max_tool_rounds 0.)
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.runtime import Runtime

from genai_agent.graphs.nodes import RunContext, State, call_model, tools_node, with_system


def _tool_choice(ctx: RunContext, messages: list[BaseMessage]) -> str:
    rounds = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and message.tool_calls:
            rounds += 1
    if rounds == 0:
        return ctx.spec.first_tool_choice
    if ctx.spec.max_tool_rounds and rounds >= ctx.spec.max_tool_rounds:
        return "none"
    return "auto"


def facts_prompt(messages: list[BaseMessage]) -> HumanMessage:
    """The turn's question and what each tool said, as one message (the phrasing SmolLM2-135M followed in
    6 of 6 probes, against 3 to 5 for three others)."""
    start = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    said = [f"The {m.name or 'tool'} tool says: {m.content}" for m in messages[start:] if isinstance(m, ToolMessage)]
    return HumanMessage("\n".join([str(messages[start].content), *said,
                                    "Answer in one sentence using what the tools say."]))


async def agent_node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    messages = state["messages"]
    tools = list(ctx.tools.values())
    choice = _tool_choice(ctx, messages) if tools else "auto"
    if choice == "none" and ctx.spec.max_tool_rounds:
        reply = await call_model(ctx, [facts_prompt(messages)])
    else:
        reply = await call_model(ctx, with_system(ctx.spec.system_prompt, messages), tools=tools, tool_choice=choice)
    return {"messages": [reply]}


def build() -> StateGraph:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("agent", agent_node)
    graph.add_node("tools", tools_node)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", "__end__"])
    graph.add_edge("tools", "agent")
    return graph
