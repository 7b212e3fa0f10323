"""gRPC adapter for the fine-tune domain: proto in, domain call, proto out. Blocking domain calls (SQLite,
tokenizing a dataset) run in a thread so the event loop keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from genai.finetune.v1 import finetune_service_pb2 as pb
from genai.finetune.v1 import finetune_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.errors import InvalidArgument
from genai_core.limits import FINETUNE
from genai_core.rpc import request_id
from genai_core.server import ServiceSpec

from genai_finetune import convert
from genai_finetune.artifacts import Artifacts
from genai_finetune.datafiles import Datasets
from genai_finetune.jobs import Jobs
from genai_finetune.methods import METHODS
from genai_finetune.types import ServiceInfo

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FinetuneService"].full_name
DEFAULT_PAGE, MAX_PAGE = FINETUNE.default_page_size, FINETUNE.max_page_size


@dataclass(frozen=True)
class Finetune:
    """The domain objects the servicer calls, built in the composition root once the store is open."""

    datasets: Datasets
    jobs: Jobs
    artifacts: Artifacts
    info: ServiceInfo
    poll_seconds: float


def _page_size(value: int, default: int = DEFAULT_PAGE) -> int:
    if value > MAX_PAGE:
        raise InvalidArgument.for_field("page_size", f"must be at most {MAX_PAGE}")
    return value or default


class FinetuneServicer(pb_grpc.FinetuneServiceServicer):
    def __init__(self, finetune: Deferred[Finetune]) -> None:
        self._deferred = finetune

    @property
    def _ft(self) -> Finetune:
        return self._deferred.get()

    async def GetInfo(self, request, context):
        info = self._ft.info
        return pb.GetInfoResponse(
            request_id=request_id(request), engine=info.engine, base_models=info.base_models,
            methods=[convert.method_pb(m) for m in METHODS.values()], runner=info.runner,
            max_concurrent_jobs=info.max_concurrent_jobs, max_dataset_bytes=info.max_dataset_bytes,
            max_dataset_records=info.max_dataset_records)

    # -- datasets -------------------------------------------------------------------------------------

    async def CreateDataset(self, request, context):
        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument.for_field("content", "send the file's content (or a file_path under the imports dir)")
        dataset = await asyncio.to_thread(
            self._ft.datasets.create, filename=request.filename, purpose=request.purpose,
            content=request.content if source == "content" else None, file_path=request.file_path,
            declared=convert.dataset_format(request.format))
        return pb.CreateDatasetResponse(request_id=request_id(request), dataset=convert.dataset_pb(dataset))

    async def GetDataset(self, request, context):
        dataset = await asyncio.to_thread(self._ft.datasets.get, request.dataset_id)
        return pb.GetDatasetResponse(request_id=request_id(request), dataset=convert.dataset_pb(dataset))

    async def ListDatasets(self, request, context):
        page = await asyncio.to_thread(self._ft.datasets.list, request.after, _page_size(request.page_size),
                                       request.purpose)
        return pb.ListDatasetsResponse(request_id=request_id(request), has_more=page.has_more,
                                       datasets=[convert.dataset_pb(d) for d in page.items])

    async def GetDatasetContent(self, request, context):
        content = await asyncio.to_thread(self._ft.datasets.content, request.dataset_id)
        return pb.GetDatasetContentResponse(request_id=request_id(request), content=content)

    async def DeleteDataset(self, request, context):
        dataset = await asyncio.to_thread(self._ft.datasets.delete, request.dataset_id)
        return pb.DeleteDatasetResponse(request_id=request_id(request), dataset_id=dataset.id)

    # -- jobs -----------------------------------------------------------------------------------------

    async def CreateTuningJob(self, request, context):
        job = await asyncio.to_thread(self._ft.jobs.create, convert.job_request(request))
        return pb.CreateTuningJobResponse(request_id=request_id(request), job=convert.job_pb(job))

    async def GetTuningJob(self, request, context):
        job = await asyncio.to_thread(self._ft.jobs.get, request.job_id)
        return pb.GetTuningJobResponse(request_id=request_id(request), job=convert.job_pb(job))

    async def ListTuningJobs(self, request, context):
        page = await asyncio.to_thread(self._ft.jobs.list, request.after, _page_size(request.page_size),
                                       convert.job_state(request.state))
        return pb.ListTuningJobsResponse(request_id=request_id(request), has_more=page.has_more,
                                         jobs=[convert.job_pb(j) for j in page.items])

    async def CancelTuningJob(self, request, context):
        job = await asyncio.to_thread(self._ft.jobs.cancel, request.job_id)
        return pb.CancelTuningJobResponse(request_id=request_id(request), job=convert.job_pb(job))

    async def PauseTuningJob(self, request, context):
        job = await asyncio.to_thread(self._ft.jobs.pause, request.job_id)
        return pb.PauseTuningJobResponse(request_id=request_id(request), job=convert.job_pb(job))

    async def ResumeTuningJob(self, request, context):
        job = await asyncio.to_thread(self._ft.jobs.resume, request.job_id)
        return pb.ResumeTuningJobResponse(request_id=request_id(request), job=convert.job_pb(job))

    async def ListTuningJobEvents(self, request, context):
        page = await asyncio.to_thread(self._ft.jobs.events, request.job_id, request.after,
                                       _page_size(request.page_size))
        return pb.ListTuningJobEventsResponse(request_id=request_id(request), has_more=page.has_more,
                                              events=[convert.event_pb(e) for e in page.items])

    async def StreamTuningJobEvents(self, request, context) -> AsyncIterator[pb.StreamTuningJobEventsResponse]:
        ft, rid = self._ft, request_id(request)
        job = await asyncio.to_thread(ft.jobs.get, request.job_id)
        sequence = request.after_sequence
        while True:
            events = await asyncio.to_thread(ft.jobs.events_after, job.id, sequence)
            for event in events:
                sequence = event.sequence
                yield pb.StreamTuningJobEventsResponse(request_id=rid, event=convert.event_pb(event))
                if event.state is not None and event.state.terminal:
                    return
            if not events:
                job = await asyncio.to_thread(ft.jobs.get, job.id)
                if job.state.terminal and sequence >= job.last_sequence:
                    return
                await asyncio.sleep(ft.poll_seconds)

    async def ListTuningJobCheckpoints(self, request, context):
        page = await asyncio.to_thread(self._ft.jobs.checkpoints, request.job_id, request.after,
                                       _page_size(request.page_size, FINETUNE.default_checkpoint_page_size))
        return pb.ListTuningJobCheckpointsResponse(request_id=request_id(request), has_more=page.has_more,
                                                   checkpoints=[convert.checkpoint_pb(c) for c in page.items])

    # -- artifacts ------------------------------------------------------------------------------------

    async def ListArtifacts(self, request, context):
        page = await asyncio.to_thread(self._ft.artifacts.list, request.after, _page_size(request.page_size),
                                       request.job_id)
        return pb.ListArtifactsResponse(request_id=request_id(request), has_more=page.has_more,
                                        artifacts=[convert.artifact_pb(a) for a in page.items])

    async def GetArtifact(self, request, context):
        artifact = await asyncio.to_thread(self._ft.artifacts.get, request.artifact_id)
        return pb.GetArtifactResponse(request_id=request_id(request), artifact=convert.artifact_pb(artifact))

    async def DeleteArtifact(self, request, context):
        artifact = await self._ft.artifacts.delete(request.artifact_id)
        return pb.DeleteArtifactResponse(request_id=request_id(request), artifact=convert.artifact_pb(artifact))


def service_spec(finetune: Deferred[Finetune]) -> ServiceSpec:
    servicer = FinetuneServicer(finetune)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_FinetuneServiceServicer_to_server(servicer, server))
