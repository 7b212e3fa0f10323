"""A LangGraph Agent Server–compatible API over the agent service, mounted under ``/langgraph``: the
unmodified ``langgraph-sdk`` works against ``get_client(url="http://<gateway>/langgraph")``.

Served: assistants (create, get, update, delete, search, count), threads (create, get, update, delete,
search, count, state, state at a checkpoint, update state, history), runs on a thread and stateless
(create, stream, wait, list, get, delete, cancel, join, join stream), ``/info`` and ``/ok``. Streams are
SSE exactly as the SDK parses them: ``event: metadata`` first, one event per stream mode, ``error`` and
``end``; every event carries ``id:`` and the response a ``Location`` to rejoin with ``Last-Event-ID``.
The tenant is the ``X-Tenant`` header (``get_client(headers={"X-Tenant": ...})``).
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from genai.agent.v1 import agent_service_pb2 as pb
from genai_core.limits import AGENT
from google.protobuf import json_format, struct_pb2

from genai_gateway.errors import GatewayError, call, invalid_argument
from genai_gateway.routes import agent_render as render
from genai_gateway.routes import calls, sse
from genai_gateway.routes import langgraph_protocol as api
from genai_gateway.routes._bounds import JSON_SAFE_MAX, UINT32_MAX
from genai_gateway.routes._tenant import Tenant
from genai_gateway.routing import ApiRoute

PREFIX = "/langgraph"
router = APIRouter(prefix=PREFIX, tags=["langgraph"], route_class=ApiRoute)

# The sequence of the last event a reconnecting client saw (what this server sent as ``id:``).
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,15}$",
                                           description="resume after this event (its `id:`)")]
MODES = {"values": pb.STREAM_MODE_VALUES, "updates": pb.STREAM_MODE_UPDATES, "messages": pb.STREAM_MODE_MESSAGES,
         "tasks": pb.STREAM_MODE_TASKS, "custom": pb.STREAM_MODE_CUSTOM}
MODE_NAMES = {pb.STREAM_MODE_VALUES: "values", pb.STREAM_MODE_UPDATES: "updates",
              pb.STREAM_MODE_MESSAGES: "messages-tuple", pb.STREAM_MODE_TASKS: "tasks",
              pb.STREAM_MODE_CUSTOM: "custom"}
STRATEGIES = {None: pb.MULTITASK_STRATEGY_UNSPECIFIED, "reject": pb.MULTITASK_STRATEGY_REJECT,
              "enqueue": pb.MULTITASK_STRATEGY_ENQUEUE, "interrupt": pb.MULTITASK_STRATEGY_INTERRUPT}
THREAD_STATUS = {"idle": pb.THREAD_STATUS_IDLE, "busy": pb.THREAD_STATUS_BUSY,
                 "interrupted": pb.THREAD_STATUS_INTERRUPTED, "error": pb.THREAD_STATUS_ERROR}
RUN_STATUS = {"pending": pb.RUN_STATUS_PENDING, "running": pb.RUN_STATUS_RUNNING,
              "interrupted": pb.RUN_STATUS_INTERRUPTED, "success": pb.RUN_STATUS_SUCCESS,
              "error": pb.RUN_STATUS_ERROR, "timeout": pb.RUN_STATUS_TIMEOUT}
ROLES = {"user": "human", "human": "human", "assistant": "ai", "ai": "ai", "system": "system",
         "developer": "system", "tool": "tool"}
PROVIDERS = {"inference": pb.MODEL_PROVIDER_INFERENCE, "openai": pb.MODEL_PROVIDER_OPENAI}
RENAMES = {r"^run\.input\.": "input.", r"^run\.command\.": "command.", r"^run\.": "", r"^spec\.": "context."}


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{PREFIX}"


# -- request shapes -> proto ----------------------------------------------------------------------------------


def _content(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("text", "") if isinstance(p, dict) else p for p in value]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    if value is None:
        return ""
    raise invalid_argument(param, "content is a string or a list of text parts")


def _message(value: Any, param: str) -> pb.Message:
    if isinstance(value, str):
        return pb.Message(type="human", content=value)
    if not isinstance(value, dict):
        raise invalid_argument(param, 'a message is a string or an object with "role" (or "type") and "content"')
    kind = ROLES.get(str(value.get("type") or value.get("role") or ""))
    if kind is None:
        raise invalid_argument(f"{param}.role", "use user, assistant, system or tool (or human, ai)")
    out = pb.Message(type=kind, content=_content(value.get("content"), f"{param}.content"),
                     id=str(value.get("id") or ""), name=str(value.get("name") or ""),
                     tool_call_id=str(value.get("tool_call_id") or ""), status=str(value.get("status") or ""))
    calls = value.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid_argument(f"{param}.tool_calls", "a list of tool calls")
    for i, c in enumerate(calls):
        where = f"{param}.tool_calls[{i}]"
        if not isinstance(c, dict):
            raise invalid_argument(where, "a tool call is an object")
        function = c.get("function")
        if isinstance(function, dict):  # OpenAI's shape: arguments as a JSON text
            arguments = function.get("arguments") or "{}"
            try:
                args = json.loads(arguments) if isinstance(arguments, str) else None
            except ValueError:
                args = None
            if not isinstance(args, dict):
                raise invalid_argument(f"{where}.function.arguments", "a JSON object as text") from None
            name, args_param = function.get("name", ""), f"{where}.function.arguments"
        elif function is None:
            args, name, args_param = c.get("args") or {}, c.get("name", ""), f"{where}.args"
        else:
            raise invalid_argument(f"{where}.function", 'an object with "name" and "arguments"')
        out.tool_calls.append(pb.ToolCall(id=str(c.get("id") or ""), name=str(name), args=render.struct(args, args_param)))
    return out


def state_values(value: dict[str, Any] | list[dict[str, Any]] | None, param: str) -> pb.StateValues:
    if isinstance(value, list):  # update_state also takes a list of updates; one is what a write is
        value = value[0] if len(value) == 1 else None
        if value is None:
            raise invalid_argument(param, "send one update")
    value = dict(value or {})
    messages = value.pop("messages", [])
    if isinstance(messages, (str, dict)):
        messages = [messages]
    if not isinstance(messages, list):
        raise invalid_argument(f"{param}.messages", "a list of messages")
    return pb.StateValues(messages=[_message(m, f"{param}.messages[{i}]") for i, m in enumerate(messages)],
                          values=render.struct(value, param))


def _modes(stream_mode: str | list[str] | None) -> list[str]:
    names = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode or ["values"])
    for name in names:  # the body's schema lists the served modes; a join's query is checked here
        if name not in render.SUPPORTED_MODES:
            raise invalid_argument("stream_mode", f"{name!r} is not served; use {', '.join(render.SUPPORTED_MODES)}")
    return names


def _proto_modes(names: list[str]) -> list[int]:
    return sorted({m for n in names for m in render.MODE_EVENTS[n]})


def spec(context: dict[str, Any] | None, config: api.Config | None, param: str = "context") -> pb.AgentSpec:
    data = dict(context or {})
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise invalid_argument(f"{param}.model", 'an object such as {"name": "...", "provider": "inference"}')
    model = dict(model)
    if isinstance(model.get("provider"), str) and model["provider"] in PROVIDERS:
        model["provider"] = PROVIDERS[model["provider"]]
    if model:
        data["model"] = model
    if config is not None and config.recursion_limit is not None:
        data["max_steps"] = config.recursion_limit
    try:
        return json_format.ParseDict(data, pb.AgentSpec())
    except (json_format.ParseError, OverflowError, ValueError, TypeError) as exc:
        raise invalid_argument(param, str(exc)[:300]) from None


def run_spec(body: api.RunCreate, thread_id: str) -> pb.RunSpec:
    config = body.config or api.Config()
    configurable = {**(config.configurable or {}), **(body.context or {})}
    out = pb.RunSpec(
        thread_id=thread_id, assistant_id=body.assistant_id, metadata=render.struct(body.metadata, "metadata"),
        configurable=render.struct(configurable, "context" if body.context else "config.configurable"), multitask_strategy=STRATEGIES[body.multitask_strategy],
        create_thread=body.if_not_exists == "create", keep_thread=body.on_completion == "keep",
        checkpoint_id=body.checkpoint_id or (body.checkpoint.checkpoint_id if body.checkpoint else "") or "",
        interrupt_before=[body.interrupt_before] if isinstance(body.interrupt_before, str) else body.interrupt_before or [],
        interrupt_after=[body.interrupt_after] if isinstance(body.interrupt_after, str) else body.interrupt_after or [],
        on_disconnect={None: pb.ON_DISCONNECT_UNSPECIFIED, "cancel": pb.ON_DISCONNECT_CANCEL,
                       "continue": pb.ON_DISCONNECT_CONTINUE}[body.on_disconnect],
    )
    if config.recursion_limit is not None:
        out.max_steps = config.recursion_limit
    if body.input is not None:
        out.input.CopyFrom(state_values(body.input, "input"))
    if body.command is not None:
        command = out.command
        if "resume" in body.command.model_fields_set:
            try:
                command.resume.CopyFrom(json_format.ParseDict(body.command.resume, struct_pb2.Value()))
            except (json_format.ParseError, OverflowError, ValueError, TypeError) as exc:
                raise invalid_argument("command.resume", str(exc)[:300]) from None
        if body.command.update is not None:
            command.update.CopyFrom(state_values(body.command.update, "command.update"))
        goto = body.command.goto
        if goto is not None:
            command.goto.extend([goto] if isinstance(goto, str) else goto if isinstance(goto, list) else [])
    if body.stream_mode is not None:
        out.stream_modes.extend(_proto_modes(_modes(body.stream_mode)))
    return out


# -- meta -----------------------------------------------------------------------------------------------------


@router.get("/ok", summary="Liveness, as LangGraph's server answers it")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.get("/info", summary="Server information")
async def info(request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "agent").GetInfo(pb.GetInfoRequest(request_id=calls.request_id(request))))
    return {"version": importlib.metadata.version("genai-gateway"), "langgraph_py_version": reply.engine_version,
            "flags": {"assistants": True, "crons": False, "langsmith": False}, "graphs": list(reply.graph_ids),
            "checkpointer": reply.checkpointer}


# -- assistants -----------------------------------------------------------------------------------------------


@router.post("/assistants", summary="Create an assistant")
async def create_assistant(body: api.AssistantCreate, request: Request, x_tenant: Tenant = "default"):
    message = pb.CreateAssistantRequest(
        request_id=calls.request_id(request), tenant=x_tenant, assistant_id=body.assistant_id or "",
        graph_id=body.graph_id, name=body.name or "", description=body.description or "",
        spec=spec(body.context, body.config), metadata=render.struct(body.metadata, "metadata"),
        if_exists=pb.IF_EXISTS_DO_NOTHING if body.if_exists == "do_nothing" else pb.IF_EXISTS_RAISE)
    reply = await call(calls.stub(request, "agent").CreateAssistant(message), RENAMES)
    return render.assistant(reply.assistant)


@router.post("/assistants/search", summary="Search assistants (the tenant's and the built-in ones)")
async def search_assistants(body: api.AssistantSearch, request: Request, response: Response,
                            x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").ListAssistants(pb.ListAssistantsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, graph_id=body.graph_id or "", name=body.name or "",
        metadata=render.struct(body.metadata, "metadata"), limit=body.limit, offset=body.offset)))
    if body.offset + len(reply.assistants) < reply.total_count:
        response.headers["X-Pagination-Next"] = str(body.offset + len(reply.assistants))
    return [render.assistant(a) for a in reply.assistants]


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(body: api.AssistantSearch, request: Request, x_tenant: Tenant = "default") -> int:
    reply = await call(calls.stub(request, "agent").ListAssistants(pb.ListAssistantsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, graph_id=body.graph_id or "", name=body.name or "",
        metadata=render.struct(body.metadata, "metadata"), limit=1)))
    return reply.total_count


@router.get("/assistants/{assistant_id}", summary="Get an assistant (by id, name or graph id)")
async def get_assistant(assistant_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").GetAssistant(pb.GetAssistantRequest(
        request_id=calls.request_id(request), tenant=x_tenant, assistant_id=assistant_id)))
    return render.assistant(reply.assistant)


@router.patch("/assistants/{assistant_id}", summary="Update an assistant")
async def update_assistant(assistant_id: str, body: api.AssistantUpdate, request: Request,
                           x_tenant: Tenant = "default"):
    message = pb.UpdateAssistantRequest(request_id=calls.request_id(request), tenant=x_tenant,
                                        assistant_id=assistant_id)
    for name in ("graph_id", "name", "description"):
        if getattr(body, name) is not None:
            setattr(message, name, getattr(body, name))
    if body.context is not None or body.config is not None:
        current = await call(calls.stub(request, "agent").GetAssistant(pb.GetAssistantRequest(
            request_id=calls.request_id(request), tenant=x_tenant, assistant_id=assistant_id)))
        merged = {**render.spec(current.assistant.spec), **(body.context or {})}
        message.spec.CopyFrom(spec(merged, body.config))
    if body.metadata is not None:
        message.metadata.CopyFrom(render.struct(body.metadata, "metadata"))
    reply = await call(calls.stub(request, "agent").UpdateAssistant(message), RENAMES)
    return render.assistant(reply.assistant)


@router.delete("/assistants/{assistant_id}", status_code=204, summary="Delete an assistant")
async def delete_assistant(assistant_id: str, request: Request, x_tenant: Tenant = "default"):
    await call(calls.stub(request, "agent").DeleteAssistant(pb.DeleteAssistantRequest(
        request_id=calls.request_id(request), tenant=x_tenant, assistant_id=assistant_id)))
    return Response(status_code=204)


# -- threads --------------------------------------------------------------------------------------------------


async def _thread_json(request: Request, tenant: str, thread: pb.Thread) -> dict[str, Any]:
    interrupts: dict[str, list[dict[str, Any]]] = {}
    if thread.status == pb.THREAD_STATUS_INTERRUPTED:
        state = await call(calls.stub(request, "agent").GetThreadState(pb.GetThreadStateRequest(
            request_id=calls.request_id(request), tenant=tenant, thread_id=thread.thread_id)))
        interrupts = {t.id: [render.interrupt(i) for i in t.interrupts] for t in state.state.tasks if t.interrupts}
    return render.thread(thread, interrupts)


@router.post("/threads", summary="Create a thread")
async def create_thread(body: api.ThreadCreate, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").CreateThread(pb.CreateThreadRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=body.thread_id or "",
        metadata=render.struct(body.metadata, "metadata"),
        if_exists=pb.IF_EXISTS_DO_NOTHING if body.if_exists == "do_nothing" else pb.IF_EXISTS_RAISE)))
    return render.thread(reply.thread)


@router.post("/threads/search", summary="Search the tenant's threads")
async def search_threads(body: api.ThreadSearch, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").ListThreads(pb.ListThreadsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, metadata=render.struct(body.metadata, "metadata"),
        status=THREAD_STATUS.get(body.status or "", pb.THREAD_STATUS_UNSPECIFIED), thread_ids=body.ids or [],
        limit=body.limit, offset=body.offset, include_values=True)))
    return [render.thread(t) for t in reply.threads]


@router.post("/threads/count", summary="Count the tenant's threads")
async def count_threads(body: api.ThreadSearch, request: Request, x_tenant: Tenant = "default") -> int:
    reply = await call(calls.stub(request, "agent").ListThreads(pb.ListThreadsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, metadata=render.struct(body.metadata, "metadata"),
        status=THREAD_STATUS.get(body.status or "", pb.THREAD_STATUS_UNSPECIFIED), limit=1)))
    return reply.total_count


@router.get("/threads/{thread_id}", summary="Get a thread with its values")
async def get_thread(thread_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").GetThread(pb.GetThreadRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id)))
    return await _thread_json(request, x_tenant, reply.thread)


@router.patch("/threads/{thread_id}", summary="Merge metadata into a thread")
async def update_thread(thread_id: str, body: api.ThreadUpdate, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").UpdateThread(pb.UpdateThreadRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, metadata=render.struct(body.metadata, "metadata"))))
    return render.thread(reply.thread)


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete a thread, its runs and checkpoints")
async def delete_thread(thread_id: str, request: Request, x_tenant: Tenant = "default"):
    await call(calls.stub(request, "agent").DeleteThread(pb.DeleteThreadRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id)))
    return Response(status_code=204)


async def _state(request: Request, tenant: str, thread_id: str, checkpoint_id: str = "") -> dict[str, Any]:
    reply = await call(calls.stub(request, "agent").GetThreadState(pb.GetThreadStateRequest(
        request_id=calls.request_id(request), tenant=tenant, thread_id=thread_id, checkpoint_id=checkpoint_id)))
    return render.thread_state(reply.state, thread_id)


@router.get("/threads/{thread_id}/state", summary="A thread's latest state")
async def get_state(thread_id: str, request: Request, x_tenant: Tenant = "default"):
    return await _state(request, x_tenant, thread_id)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="A thread's state at a checkpoint")
async def get_state_at(thread_id: str, checkpoint_id: str, request: Request, x_tenant: Tenant = "default"):
    return await _state(request, x_tenant, thread_id, checkpoint_id)


@router.post("/threads/{thread_id}/state/checkpoint", summary="A thread's state at a checkpoint")
async def post_state_at(thread_id: str, body: api.StateCheckpointRequest, request: Request,
                        x_tenant: Tenant = "default"):
    return await _state(request, x_tenant, thread_id, body.checkpoint.checkpoint_id or "")


@router.post("/threads/{thread_id}/state", summary="Write values into a thread's state")
async def update_state(thread_id: str, body: api.StateUpdate, request: Request, x_tenant: Tenant = "default"):
    message = pb.UpdateThreadStateRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id,
        values=state_values(body.values, "values"), as_node=body.as_node or "",
        checkpoint_id=body.checkpoint_id or (body.checkpoint.checkpoint_id if body.checkpoint else "") or "")
    reply = await call(calls.stub(request, "agent").UpdateThreadState(message))
    return {"checkpoint": render.checkpoint(reply.checkpoint)}


@router.post("/threads/{thread_id}/history", summary="A thread's states, newest first")
async def history(thread_id: str, body: api.HistoryRequest, request: Request, x_tenant: Tenant = "default"):
    before = body.before if isinstance(body.before, str) else (body.before.checkpoint_id if body.before else "")
    reply = await call(calls.stub(request, "agent").ListCheckpoints(pb.ListCheckpointsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, limit=body.limit,
        before_checkpoint_id=before or "", metadata=render.struct(body.metadata, "metadata"), include_values=True)))
    return [render.thread_state(s, thread_id) for s in reply.states]


# -- runs -----------------------------------------------------------------------------------------------------


def _locations(request: Request, thread_id: str, run_id: str) -> str:
    return f"{_base(request)}/threads/{thread_id}/runs/{run_id}"


def _error_frame(exc: GatewayError) -> bytes:
    return render.frame("error", {"error": exc.code, "message": exc.message})


async def _open(request: Request, tenant: str, spec_: pb.RunSpec, modes: list[int]) -> tuple[Any, pb.RunEvent]:
    """Start StreamRun and read its first event (the run's metadata): errors up to here are HTTP errors."""
    stream = calls.stub(request, "agent").StreamRun(pb.StreamRunRequest(
        request_id=calls.request_id(request), tenant=tenant, run=spec_, stream_modes=modes))
    try:
        first = await call(stream.read(), RENAMES)
    except BaseException:
        stream.cancel()
        raise
    if first is grpc.aio.EOF:
        raise render.ended_early()
    return stream, first.event


def _sse(request: Request, stream: Any, first: pb.RunEvent | None, renderer: render.StreamRenderer
         ) -> sse.EventStream:
    async def frames():
        if first is not None:
            for f in renderer.render(first):
                yield f
        while True:
            reply = await call(stream.read())
            if reply is grpc.aio.EOF:
                return
            for f in renderer.render(reply.event):
                yield f

    return sse.EventStream(sse.events(frames(), [stream], _error_frame))


async def _stream_run(request: Request, tenant: str, thread_id: str, body: api.RunCreate) -> sse.EventStream:
    names = _modes(body.stream_mode)
    spec_ = run_spec(body, thread_id)
    stream, first = await _open(request, tenant, spec_, _proto_modes(names))
    run_url = _locations(request, first.metadata.thread_id, first.metadata.run_id)
    response = _sse(request, stream, first, render.StreamRenderer(names))
    response.headers["Content-Location"] = run_url
    query = "&".join(f"stream_mode={n}" for n in names)
    response.headers["Location"] = f"{run_url}/stream?{query}"
    return response


async def _wait_run(request: Request, tenant: str, thread_id: str, body: api.RunCreate) -> JSONResponse:
    spec_ = run_spec(body, thread_id)
    if body.on_disconnect is None:
        spec_.on_disconnect = pb.ON_DISCONNECT_CONTINUE  # as LangGraph: a dropped wait rejoins with GET .../join
    stream, first = await _open(request, tenant, spec_, [pb.STREAM_MODE_VALUES])
    values, status, error = await render.outcome(stream, call)
    run_url = _locations(request, first.metadata.thread_id, first.metadata.run_id)
    return JSONResponse(render.result(status, error, values),
                        headers={"Content-Location": run_url, "Location": f"{run_url}/join"})


async def _create_run(request: Request, tenant: str, thread_id: str, body: api.RunCreate) -> JSONResponse:
    reply = await call(calls.stub(request, "agent").CreateRun(pb.CreateRunRequest(
        request_id=calls.request_id(request), tenant=tenant, run=run_spec(body, thread_id))), RENAMES)
    return JSONResponse(render.run(reply.run),
                        headers={"Content-Location": _locations(request, reply.run.thread_id, reply.run.run_id)})


@router.post("/threads/{thread_id}/runs", summary="Start a run in the background")
async def create_run(thread_id: str, body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _create_run(request, x_tenant, thread_id, body)


@router.post("/runs", summary="Start a stateless run in the background")
async def create_stateless_run(body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _create_run(request, x_tenant, "", body)


@router.post("/threads/{thread_id}/runs/stream", summary="Start a run and stream its events (SSE)")
async def stream_run(thread_id: str, body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _stream_run(request, x_tenant, thread_id, body)


@router.post("/runs/stream", summary="Start a stateless run and stream its events (SSE)")
async def stream_stateless_run(body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _stream_run(request, x_tenant, "", body)


@router.post("/threads/{thread_id}/runs/wait", summary="Start a run and wait for its final values")
async def wait_run(thread_id: str, body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _wait_run(request, x_tenant, thread_id, body)


@router.post("/runs/wait", summary="Start a stateless run and wait for its final values")
async def wait_stateless_run(body: api.RunCreate, request: Request, x_tenant: Tenant = "default"):
    return await _wait_run(request, x_tenant, "", body)


@router.get("/threads/{thread_id}/runs", summary="List a thread's runs, newest first")
async def list_runs(thread_id: str, request: Request, x_tenant: Tenant = "default",
                    limit: int = Query(10, ge=1, le=AGENT.max_page_size), offset: int = Query(0, ge=0, le=UINT32_MAX),
                    status: Literal["pending", "running", "interrupted", "success", "error", "timeout"] | None = None):
    reply = await call(calls.stub(request, "agent").ListRuns(pb.ListRunsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, limit=limit, offset=offset,
        status=RUN_STATUS.get(status or "", pb.RUN_STATUS_UNSPECIFIED))))
    return [render.run(r) for r in reply.runs]


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
async def get_run(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").GetRun(pb.GetRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id)))
    return render.run(reply.run)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, summary="Delete a finished run")
async def delete_run(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default"):
    await call(calls.stub(request, "agent").DeleteRun(pb.DeleteRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id)))
    return Response(status_code=204)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=204, summary="Cancel a run")
async def cancel_run(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default",
                     wait: bool = False, action: Literal["interrupt"] = Query(
                         "interrupt", description="rollback is not served: the checkpointers cannot delete one "
                                                  "run's checkpoints")):
    await call(calls.stub(request, "agent").CancelRun(pb.CancelRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id, wait=wait)))
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run and return its final values")
async def join_run(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").WaitRun(pb.WaitRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id)))
    error = reply.run.error if reply.run.HasField("error") else None
    return render.result(reply.run.status, error, reply.values if reply.HasField("values") else None)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's event stream (SSE)")
async def join_stream(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default",
                      stream_mode: list[str] | None = Query(None), cancel_on_disconnect: bool = False,
                      last_event_id: LastEventId = None):
    names = [m for m in (stream_mode or []) if m]
    if not names:
        run = await call(calls.stub(request, "agent").GetRun(pb.GetRunRequest(
            request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id)))
        names = [MODE_NAMES[m] for m in run.run.stream_modes if m in MODE_NAMES] or list(MODE_NAMES.values())
    names = _modes(names)
    after = min(int(last_event_id), JSON_SAFE_MAX) if last_event_id else 0
    stream = calls.stub(request, "agent").JoinRun(pb.JoinRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id,
        after_sequence=after, stream_modes=_proto_modes(names), cancel_on_disconnect=cancel_on_disconnect))
    try:
        first = await call(stream.read())
    except BaseException:
        stream.cancel()
        raise
    renderer = render.StreamRenderer(names)
    renderer.meta = {"run_id": run_id, "thread_id": thread_id}
    event = None if first is grpc.aio.EOF else first.event
    if event is not None and after and event.HasField("metadata"):  # a rejoin has seen the metadata: skip it
        renderer.render(event)
        event = None
    return _sse(request, stream, event, renderer)
