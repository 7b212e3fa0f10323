"""Native agent routes for what the LangGraph-compatible and OpenAI-compatible APIs do not cover: the
tool registry, a thread's checkpoints, and runs with their usage and timings.

Responses are the proto messages as JSON (field names as in ``genai.agent.v1``). The tenant is the
``X-Tenant`` header.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from genai.agent.v1 import agent_service_pb2 as pb

from genai_gateway.errors import call
from genai_gateway.routes import agent_render as render
from genai_gateway.routes import calls

router = APIRouter(prefix="/v1/agent", tags=["agent"])

Tenant = Annotated[str, Header(alias="X-Tenant", description="the tenant that owns threads and assistants")]


@router.get("/info", summary="The agent runtime, its graphs, defaults and limits")
async def info(request: Request):
    reply = await call(calls.stub(request, "agent").GetInfo(pb.GetInfoRequest(request_id=calls.request_id(request))))
    return render.jsonify(reply)


@router.get("/tools", summary="The tools assistants may use (built-in, retrieval, tokenizer, MCP)")
async def list_tools(request: Request, x_tenant: Tenant = "default",
                     assistant_id: str = Query("", description="only this assistant's tools (its id or name)")):
    reply = await call(calls.stub(request, "agent").ListTools(pb.ListToolsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, assistant_id=assistant_id)))
    return {"object": "list", "data": [render.jsonify(t) for t in reply.tools]}


@router.get("/threads/{thread_id}/checkpoints", summary="A thread's checkpoints, newest first (without values)")
async def list_checkpoints(thread_id: str, request: Request, x_tenant: Tenant = "default",
                           limit: int = Query(10, ge=1, le=1000), before: str = "",
                           run_id: str = Query("", description="only the checkpoints this run wrote")):
    metadata = pb.ListCheckpointsRequest().metadata
    if run_id:
        metadata.update({"run_id": run_id})
    reply = await call(calls.stub(request, "agent").ListCheckpoints(pb.ListCheckpointsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, limit=limit,
        before_checkpoint_id=before, metadata=metadata)))
    data = []
    for s in reply.states:
        item = render.jsonify(s)
        item.pop("values", None)
        data.append(item)
    return {"object": "list", "data": data}


@router.get("/threads/{thread_id}/checkpoints/{checkpoint_id}", summary="A thread's state at one checkpoint")
async def get_checkpoint(thread_id: str, checkpoint_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").GetThreadState(pb.GetThreadStateRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, checkpoint_id=checkpoint_id)))
    return render.jsonify(reply.state)


@router.get("/threads/{thread_id}/runs/{run_id}", summary="A run with its usage, steps and timings")
async def get_run(thread_id: str, run_id: str, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "agent").GetRun(pb.GetRunRequest(
        request_id=calls.request_id(request), tenant=x_tenant, thread_id=thread_id, run_id=run_id)))
    return render.jsonify(reply.run)
