"""``react``: the tool-calling loop. The model answers or calls tools; the tools node runs them (after a
human approved those that need it) and the model goes again, until it answers or the step limit ends the
run. LangGraph is the loop: two nodes, ``tools_condition`` between them, the recursion limit as the bound.

The first model call of a turn uses the assistant's ``first_tool_choice`` ("required" or a tool name
forces a tool call, which lets a small model that rarely picks tools on its own still use them); later
calls are "auto".
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.runtime import Runtime

from genai_agent.graphs.nodes import RunContext, State, call_model, tools_node, with_system


async def agent_node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    messages = state["messages"]
    tools = list(ctx.tools.values())
    first = bool(messages) and isinstance(messages[-1], HumanMessage)
    choice = ctx.spec.first_tool_choice if first and tools else "auto"
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
