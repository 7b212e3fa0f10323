"""The tools on their own: the safe calculator, HTTP GET's allow-list, time, token count, MCP over stdio,
and approval decisions."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from genai_agent.approval import approval_request, approval_value, parse_decisions
from genai_agent.calculator import CalculatorError, evaluate, format_number
from genai_agent.mcptools import McpServerConfig, McpServers, load_config
from genai_agent.standard_tools import HttpPolicy, ToolDeps, ToolInputError, current_time, http_get, token_count
from genai_agent.toolkit import ToolContext
from genai_agent.types import AgentSpec, RunSpec, RunStatus, StateValues, ToolCall
from genai_core.errors import InvalidArgument
from langchain_core.messages import HumanMessage, ToolMessage

from services.agent.tests.conftest import open_harness
from services.agent.tests.fakes import FakeRetrieval, FakeTokens, call

CTX = ToolContext("default", AgentSpec())


@pytest.mark.parametrize(("expression", "value"), [
    ("2 * (3 + 4) ** 2", "98"), ("37*91", "3367"), ("10 / 4", "2.5"), ("2^10", "1024"), ("-3 + 1", "-2"),
    ("sqrt(16) + max(1, 2)", "6"), ("round(pi, 3)", "3.142"), ("7 // 2 + 7 % 2", "4"), ("1e3 * 2", "2000"),
])
def test_calculator_computes(expression, value):
    assert format_number(evaluate(expression)) == value


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').system('ls')", "is not allowed"), ("open('x')", "is not allowed"), ("a + 1", "is not allowed"),
    ("(1).real", "is not allowed"), ("[x for x in range(9)]", "is not allowed"), ("'a' * 3", "is not allowed"),
    ("1 / 0", "division by zero"), ("9 ** 99999", "exponents above"), ("10.0 ** 400", "too large"),
    ("", "empty"), ("1 +", "not an arithmetic expression"), ("sqrt(-1)", "sqrt"), ("1" * 600, "longer than"),
])
def test_calculator_rejects(expression, message):
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b"hello from " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_http_get_fetches_only_allowed_urls(local_http):
    denied = http_get(ToolDeps(FakeRetrieval(), FakeTokens(), HttpPolicy()))
    with pytest.raises(ToolInputError, match="not on the allow-list"):
        await denied.run({"url": f"{local_http}/x"}, CTX)
    allowed = http_get(ToolDeps(FakeRetrieval(), FakeTokens(), HttpPolicy(allow=(f"{local_http}/docs/",))))
    reply = await allowed.run({"url": f"{local_http}/docs/a"}, CTX)
    assert '"status": 200' in reply and "hello from /docs/a" in reply
    with pytest.raises(ToolInputError):
        await allowed.run({"url": f"{local_http}/private"}, CTX)
    assert allowed.requires_approval  # reaching outside the suite waits for a human by default


async def test_time_and_token_count():
    deps = ToolDeps(FakeRetrieval(), FakeTokens(), HttpPolicy(), now=lambda: datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
    assert await current_time(deps).run({"timezone": "Europe/Vienna"}, CTX) == (
        "2026-01-02T13:00:00+01:00 (Friday, Europe/Vienna)")
    with pytest.raises(ToolInputError, match="unknown time zone"):
        await current_time(deps).run({"timezone": "Mars/Olympus"}, CTX)
    assert await token_count(deps).run({"text": "one two three"}, CTX) == "3 tokens"


def test_approval_decisions():
    calls = [ToolCall("a", "http_get", {"url": "u"}), ToolCall("b", "calculator", {"expression": "1"})]
    value = approval_value(calls)
    assert approval_request(value).tool_calls == tuple(calls)
    assert approval_request({"other": 1}) is None
    assert {k: d.kind for k, d in parse_decisions("approve", calls).items()} == {"a": "approve", "b": "approve"}
    assert {k: d.kind for k, d in parse_decisions(False, calls).items()} == {"a": "deny", "b": "deny"}
    mixed = parse_decisions({"b": {"type": "edit", "args": {"expression": "2"}}, "a": "reject"}, calls)
    assert (mixed["a"].kind, mixed["b"].kind, mixed["b"].args) == ("deny", "edit", {"expression": "2"})
    edited = parse_decisions([{"type": "approve"}, {"type": "edit", "edited_action": {"name": "calculator",
                                                                                      "args": {"expression": "3"}}}], calls)
    assert edited["b"].args == {"expression": "3"}
    with pytest.raises(InvalidArgument, match=r"command\.resume\.decisions\[1\]\.args"):
        parse_decisions({"decisions": ["approve", {"type": "edit"}]}, calls)
    with pytest.raises(InvalidArgument, match="no decision for tool call"):
        parse_decisions({"a": "approve"}, calls)


async def test_mcp_tools_over_stdio_in_a_run(tmp_path):
    servers_file = tmp_path / "mcp.yaml"
    servers_file.write_text('servers:\n  demo:\n    command: "{python}"\n    args: ["-m", "genai_agent.mcp_demo"]\n'
                            "    requires_approval: [word_count]\n")
    servers = McpServers(load_config(servers_file), call_timeout=30)
    tools = await servers.start()
    try:
        assert sorted(t.name for t in tools) == ["demo_convert_units", "demo_word_count"]
        by_name = {t.name: t for t in tools}
        assert by_name["demo_word_count"].requires_approval and by_name["demo_convert_units"].provider == "mcp:demo"
        assert by_name["demo_convert_units"].parameters["required"] == ["value", "from_unit", "to_unit"]
        h = await open_harness(tmp_path / "store", extra_tools=tools)
        try:
            spec = AgentSpec(tools=("demo_convert_units",), first_tool_choice="required")
            await h.domain.assistants.create("default", graph_id="react", spec=spec, name="units")
            h.chat.script = [[call("demo_convert_units", value=5, from_unit="km", to_unit="mi"),
                              call("demo_convert_units", value=1, from_unit="parsec", to_unit="m")], "About 3.1 miles."]
            run = await h.domain.runs.create("default", RunSpec("units", input=StateValues((HumanMessage("5 km?"),))))
            done, values = await h.domain.runs.wait("default", "", run.run_id)
            assert done.status is RunStatus.SUCCESS
            results = [m for m in values.messages if isinstance(m, ToolMessage)]
            assert results[0].content == "3.10686 mi" and results[0].status == "success"
            assert results[1].status == "error" and "from_unit" in results[1].content and "'parsec'" in results[1].content
        finally:
            await h.domain.runs.close()
            await h.store.close()
    finally:
        await servers.close()


def test_mcp_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("servers:\n  'bad name':\n    command: x\n")
    with pytest.raises(ValueError, match="server name"):
        load_config(bad)
    bad.write_text("servers: {}\n")
    with pytest.raises(ValueError, match="non-empty 'servers'"):
        load_config(bad)
    assert load_config(_write(tmp_path, "servers:\n  s:\n    command: '{python}'\n"))[0].command == sys.executable


def _write(tmp_path, text):
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return path


async def test_mcp_server_that_does_not_start(tmp_path):
    servers = McpServers([McpServerConfig("broken", sys.executable, ("-c", "raise SystemExit(3)"))], call_timeout=5)
    with pytest.raises(RuntimeError, match="MCP server 'broken' failed to start"):
        await servers.start()
    await servers.close()
