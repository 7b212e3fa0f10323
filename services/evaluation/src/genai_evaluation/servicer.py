"""gRPC adapter for the evaluation domain: proto in, ``convert``, ``Runs``/``TaskRegistry`` call, proto out."""

from __future__ import annotations

import asyncio
import time

from genai.evaluation.v1 import evaluation_service_pb2 as pb
from genai.evaluation.v1 import evaluation_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.rpc import request_id
from genai_core.server import ServiceSpec

from genai_evaluation import convert, metrics
from genai_evaluation.runs import Runs

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
ENGINE_VERSION = "0.1.0"


class EvaluationServicer(pb_grpc.EvaluationServiceServicer):
    def __init__(self, runs: Deferred[Runs], max_message_bytes: int = 0) -> None:
        self._deferred = runs
        self._max_message_bytes = max_message_bytes

    @property
    def _runs(self) -> Runs:
        return self._deferred.get()

    async def _task(self, spec) -> pb.Task:
        registry = self._runs.registry
        count = len(await asyncio.to_thread(registry.docs, spec))
        return convert.task(spec, registry.origin(spec.id), count)

    async def GetInfo(self, request, context):
        runs = self._runs
        return pb.GetInfoResponse(request_id=request_id(request), engine="genai-evaluation",
                                  engine_version=ENGINE_VERSION, max_concurrent_runs=runs.settings.max_concurrent_runs,
                                  store=runs.store.name, sandbox=runs.sandbox.description,
                                  max_message_bytes=self._max_message_bytes)

    async def ListTasks(self, request, context):
        page, token = await asyncio.to_thread(self._runs.registry.page, convert.output_type(request.output_type),
                                              request.page_token, request.page_size)
        return pb.ListTasksResponse(request_id=request_id(request), tasks=[await self._task(t) for t in page],
                                    next_page_token=token)

    async def GetTask(self, request, context):
        spec = await asyncio.to_thread(self._runs.registry.get, request.task_id)
        return pb.GetTaskResponse(request_id=request_id(request), task=await self._task(spec))

    async def CreateTask(self, request, context):
        spec = await asyncio.to_thread(self._runs.registry.register, request.yaml, request.replace, time.time())
        return pb.CreateTaskResponse(request_id=request_id(request), task=await self._task(spec))

    async def ListMetrics(self, request, context):
        wanted = convert.output_type(request.output_type)
        found = [m for m in sorted(metrics.METRICS.values(), key=lambda m: m.name)
                 if wanted is None or wanted in m.output_types]
        return pb.ListMetricsResponse(request_id=request_id(request), metrics=[convert.metric(m) for m in found])

    async def CreateEvaluationRun(self, request, context):
        run = await self._runs.create(convert.run_spec(request.spec))
        return pb.CreateEvaluationRunResponse(request_id=request_id(request), run=convert.run(run))

    async def CreateExperiment(self, request, context):
        experiment_id, runs = await self._runs.create_experiment(convert.run_spec(request.base, "base"),
                                                                 convert.variants(request.variants))
        return pb.CreateExperimentResponse(request_id=request_id(request), experiment_id=experiment_id,
                                           runs=[convert.run(r) for r in runs])

    async def GetEvaluationRun(self, request, context):
        return pb.GetEvaluationRunResponse(request_id=request_id(request),
                                           run=convert.run(await self._runs.get(request.run_id)))

    async def ListEvaluationRuns(self, request, context):
        runs, token = await self._runs.list(request.page_token, request.page_size, model=request.model,
                                            task_id=request.task_id, state=convert.state(request.state),
                                            experiment_id=request.experiment_id)
        return pb.ListEvaluationRunsResponse(request_id=request_id(request), runs=[convert.run(r) for r in runs],
                                             next_page_token=token)

    async def CancelEvaluationRun(self, request, context):
        return pb.CancelEvaluationRunResponse(request_id=request_id(request),
                                              run=convert.run(await self._runs.cancel(request.run_id)))

    async def StreamEvaluationRunEvents(self, request, context):
        rid = request_id(request)
        async for event in self._runs.events(request.run_id, request.after_sequence):
            yield pb.StreamEvaluationRunEventsResponse(request_id=rid, event=convert.event(event))

    async def ListEvaluationSamples(self, request, context):
        samples, token = await self._runs.samples(request.run_id, request.task_id, request.page_token,
                                                  request.page_size)
        return pb.ListEvaluationSamplesResponse(request_id=request_id(request),
                                                samples=[convert.sample(s) for s in samples], next_page_token=token)

    async def CompareEvaluationRuns(self, request, context):
        baseline, found = await self._runs.compare(
            list(request.run_ids), request.baseline_run_id, request.task_id,
            request.confidence if request.HasField("confidence") else 0.95,
            request.resamples if request.HasField("resamples") else 2000, request.include_differences)
        return pb.CompareEvaluationRunsResponse(request_id=request_id(request), baseline_run_id=baseline,
                                                comparisons=[convert.comparison(c) for c in found])


def service_spec(runs: Deferred[Runs], max_message_bytes: int = 0) -> ServiceSpec:
    servicer = EvaluationServicer(runs, max_message_bytes)
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_EvaluationServiceServicer_to_server(servicer, server))
