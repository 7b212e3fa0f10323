"""A small MCP server (stdio) shipped for tests and as an example: ``python -m genai_agent.mcp_demo``.

Point ``GENAI_AGENT_MCP_SERVERS`` at a YAML file that lists it (see ``mcptools``) and its tools appear
as ``demo_convert_units`` and ``demo_word_count``.
"""

from __future__ import annotations

from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

METERS = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "mi": 1609.344}
Unit = Literal["mm", "cm", "m", "km", "in", "ft", "mi"]  # an enum in the schema: constrained decoding keeps to it

server = MCPServer("genai-demo")


@server.tool()
def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a length between mm, cm, m, km, in, ft and mi."""
    unknown = [u for u in (from_unit, to_unit) if u not in METERS]
    if unknown:
        raise ToolError(f"unknown unit {unknown[0]!r}; use one of {', '.join(METERS)}")
    return f"{value * METERS[from_unit] / METERS[to_unit]:.6g} {to_unit}"


@server.tool()
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


if __name__ == "__main__":
    server.run("stdio")
