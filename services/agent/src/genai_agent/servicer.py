"""gRPC adapter of genai.agent.v1.AgentService: proto -> convert -> domain -> convert -> proto."""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from typing import Any

from genai.agent.v1 import agent_service_pb2 as pb
from genai.agent.v1 import agent_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.rpc import in_band, request_id
from genai_core.server import ServiceSpec

from genai_agent import convert
from genai_agent.assembly import Domain
from genai_agent.graphs import GRAPHS
from genai_agent.types import Page, RunEvent

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AgentService"].full_name


def _page(request: Any) -> Page:
    return Page(limit=request.limit or 10, offset=request.offset)


async def _events(events: AsyncIterator[RunEvent]) -> AsyncIterator[tuple[str, pb.RunEvent]]:
    try:
        async for event in events:
            yield "event", convert.event(event)
    finally:
        await events.aclose()  # a client that left: the domain cancels the run it streamed (on_disconnect)


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, domain: Deferred[Domain]) -> None:
        self._domain = domain

    @property
    def _d(self) -> Domain:
        return self._domain.get()

    async def GetInfo(self, request, context):
        s = self._d.settings
        reply = pb.GetInfoResponse(
            request_id=request_id(request), engine="langgraph", engine_version=importlib.metadata.version("langgraph"),
            graph_ids=list(GRAPHS), checkpointer=self._d.store_kind, default_max_steps=s.default_max_steps,
            max_steps_limit=s.max_steps_limit, max_concurrent_runs=s.max_concurrent_runs, default_model=s.default_model)
        reply.run_timeout.FromNanoseconds(int(s.run_timeout * 1e9))
        reply.event_retention.FromNanoseconds(int(s.event_retention * 1e9))
        return reply

    # -- assistants -------------------------------------------------------------------------------------

    async def CreateAssistant(self, request, context):
        created = await self._d.assistants.create(
            convert.tenant(request), graph_id=request.graph_id, spec=convert.spec_in(request.spec),
            assistant_id=request.assistant_id, name=request.name, description=request.description,
            metadata=convert.metadata_in(request.metadata),
            if_exists=convert.if_exists(request.if_exists))
        return pb.CreateAssistantResponse(request_id=request_id(request), assistant=convert.assistant(created))

    async def GetAssistant(self, request, context):
        found = await self._d.assistants.resolve(convert.tenant(request), request.assistant_id)
        return pb.GetAssistantResponse(request_id=request_id(request), assistant=convert.assistant(found))

    async def ListAssistants(self, request, context):
        found, total = await self._d.assistants.search(
            convert.tenant(request), _page(request), graph_id=request.graph_id, name=request.name,
            metadata=convert.metadata_in(request.metadata))
        return pb.ListAssistantsResponse(request_id=request_id(request), total_count=total,
                                         assistants=[convert.assistant(a) for a in found])

    async def UpdateAssistant(self, request, context):
        updated = await self._d.assistants.update(
            convert.tenant(request), request.assistant_id,
            graph_id=request.graph_id if request.HasField("graph_id") else None,
            name=request.name if request.HasField("name") else None,
            description=request.description if request.HasField("description") else None,
            spec=convert.spec_in(request.spec) if request.HasField("spec") else None,
            metadata=convert.metadata_in(request.metadata) if request.HasField("metadata") else None)
        return pb.UpdateAssistantResponse(request_id=request_id(request), assistant=convert.assistant(updated))

    async def DeleteAssistant(self, request, context):
        await self._d.assistants.delete(convert.tenant(request), request.assistant_id)
        return pb.DeleteAssistantResponse(request_id=request_id(request))

    async def ListTools(self, request, context):
        names = None
        if request.assistant_id:
            names = (await self._d.assistants.resolve(convert.tenant(request), request.assistant_id)).spec.tools
        return pb.ListToolsResponse(request_id=request_id(request),
                                    tools=[convert.tool(t) for t in self._d.toolbox.infos(names)])

    # -- threads ----------------------------------------------------------------------------------------

    async def CreateThread(self, request, context):
        created = await self._d.threads.create(convert.tenant(request), request.thread_id,
                                               convert.metadata_in(request.metadata),
                                               convert.if_exists(request.if_exists))
        return pb.CreateThreadResponse(request_id=request_id(request), thread=convert.thread(created))

    async def GetThread(self, request, context):
        found = await self._d.threads.get(convert.tenant(request), request.thread_id)
        values = await self._d.threads.values(found)
        return pb.GetThreadResponse(request_id=request_id(request), thread=convert.thread(found, values))

    async def ListThreads(self, request, context):
        status = convert.thread_status_in(request.status)
        found, total = await self._d.threads.search(
            convert.tenant(request), _page(request), metadata=convert.metadata_in(request.metadata),
            status=status, ids=tuple(request.thread_ids))
        threads = [convert.thread(t, await self._d.threads.values(t) if request.include_values else None)
                   for t in found]
        return pb.ListThreadsResponse(request_id=request_id(request), threads=threads, total_count=total)

    async def UpdateThread(self, request, context):
        updated = await self._d.threads.update(convert.tenant(request), request.thread_id,
                                               metadata=convert.metadata_in(request.metadata))
        return pb.UpdateThreadResponse(request_id=request_id(request), thread=convert.thread(updated))

    async def DeleteThread(self, request, context):
        await self._d.runs.delete_thread(convert.tenant(request), request.thread_id)
        return pb.DeleteThreadResponse(request_id=request_id(request))

    async def GetThreadState(self, request, context):
        state = await self._d.threads.state(convert.tenant(request), request.thread_id, request.checkpoint_id)
        return pb.GetThreadStateResponse(request_id=request_id(request), state=convert.thread_state(state))

    async def UpdateThreadState(self, request, context):
        ref = await self._d.threads.update_state(
            convert.tenant(request), request.thread_id, convert.state_values_in(request.values, "values"),
            request.as_node, request.checkpoint_id)
        return pb.UpdateThreadStateResponse(request_id=request_id(request), checkpoint=convert.checkpoint_ref(ref))

    async def ListCheckpoints(self, request, context):
        states = await self._d.threads.history(
            convert.tenant(request), request.thread_id, limit=request.limit or 10,
            before=request.before_checkpoint_id, metadata=convert.metadata_in(request.metadata),
            include_values=request.include_values)
        return pb.ListCheckpointsResponse(request_id=request_id(request),
                                          states=[convert.thread_state(s) for s in states])

    # -- runs -------------------------------------------------------------------------------------------

    async def CreateRun(self, request, context):
        created = await self._d.runs.create(convert.tenant(request), convert.run_spec(request.run))
        return pb.CreateRunResponse(request_id=request_id(request), run=convert.run(created))

    async def StreamRun(self, request, context):
        rid = request_id(request)
        modes = convert.stream_modes(request.stream_modes, "stream_modes")
        events = await self._d.runs.stream(convert.tenant(request), convert.run_spec(request.run), modes)
        async for _, event in in_band(_events(events), "run stream", rid):
            yield pb.StreamRunResponse(request_id=rid, event=event if isinstance(event, pb.RunEvent) else
                                       pb.RunEvent(error=event))

    async def JoinRun(self, request, context):
        rid = request_id(request)
        events = await self._d.runs.join(
            convert.tenant(request), request.thread_id, request.run_id, request.after_sequence,
            convert.stream_modes(request.stream_modes, "stream_modes") or None, request.cancel_on_disconnect)
        async for _, event in in_band(_events(events), "run join", rid):
            yield pb.JoinRunResponse(request_id=rid, event=event if isinstance(event, pb.RunEvent) else
                                     pb.RunEvent(error=event))

    async def WaitRun(self, request, context):
        run, values = await self._d.runs.wait(convert.tenant(request), request.thread_id, request.run_id)
        reply = pb.WaitRunResponse(request_id=request_id(request), run=convert.run(run))
        if values is not None:
            reply.values.CopyFrom(convert.state_values(values))
        return reply

    async def GetRun(self, request, context):
        found = await self._d.runs.get(convert.tenant(request), request.thread_id, request.run_id)
        return pb.GetRunResponse(request_id=request_id(request), run=convert.run(found))

    async def ListRuns(self, request, context):
        status = convert.run_status_in(request.status)
        found = await self._d.runs.list(convert.tenant(request), request.thread_id, _page(request), status)
        return pb.ListRunsResponse(request_id=request_id(request), runs=[convert.run(r) for r in found])

    async def CancelRun(self, request, context):
        cancelled = await self._d.runs.cancel(convert.tenant(request), request.thread_id, request.run_id,
                                              request.wait)
        return pb.CancelRunResponse(request_id=request_id(request), run=convert.run(cancelled))

    async def DeleteRun(self, request, context):
        await self._d.runs.delete(convert.tenant(request), request.thread_id, request.run_id)
        return pb.DeleteRunResponse(request_id=request_id(request))


def service_spec(domain: Deferred[Domain]) -> ServiceSpec:
    servicer = AgentServicer(domain)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_AgentServiceServicer_to_server(servicer, server))
