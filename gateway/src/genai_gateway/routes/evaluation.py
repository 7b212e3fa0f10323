"""Evaluation routes (native): tasks, runs with SSE progress, samples, experiments and comparisons.

Responses are the proto messages as JSON (field names as in the proto). Run events stream as SSE with
``id: <sequence>`` and ``event: <kind>``; a client that reconnects with ``Last-Event-ID`` (or ``?after=``)
gets the events after it, without gaps or repeats; the stream ends after the run's terminal state change.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Header, Query, Request
from genai.evaluation.v1 import evaluation_service_pb2 as pb
from genai_core.channels import NO_DEADLINE
from genai_core.limits import EVALUATION
from google.protobuf import json_format

from genai_gateway.errors import GatewayError, call
from genai_gateway.routes import calls, sse
from genai_gateway.routes import evaluation_protocol as api
from genai_gateway.routes._bounds import JSON_SAFE_MAX
from genai_gateway.routes._fields import set_present
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["evaluation"], route_class=ApiRoute)

MODES = {None: pb.SEARCH_MODE_UNSPECIFIED, "dense": pb.SEARCH_MODE_DENSE, "sparse": pb.SEARCH_MODE_SPARSE,
         "hybrid": pb.SEARCH_MODE_HYBRID}
OUTPUT_TYPES = {None: pb.OUTPUT_TYPE_UNSPECIFIED, **{t.removeprefix("OUTPUT_TYPE_").lower(): v
                                                     for t, v in pb.OutputType.items() if v}}
STATES = {None: pb.EvaluationRun.STATE_UNSPECIFIED, **{s.removeprefix("STATE_").lower(): v
                                                       for s, v in pb.EvaluationRun.State.items() if v}}
RENAMES = {r"^spec\.task_ids": "tasks", r"^spec\.generation\.": "", r"^spec\.retrieval\.mode": "search_mode",
           r"^spec\.retrieval\.": "", r"^spec\.": "", r"^base\.": "base."}
_UINT64 = {"examples_done", "examples_total", "last_sequence", "sequence", "seed"}
OutputTypeName = Literal["multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until", "retrieval",
                         "rag"]
StateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
PageSize = Annotated[int, Query(ge=1, le=EVALUATION.max_page_size, description="items per page")]
After = Annotated[int, Query(ge=0, le=JSON_SAFE_MAX, description="only events after this sequence number")]


def _ints(value: Any) -> Any:
    """proto3 JSON writes 64-bit integers as strings; these fit a JSON number."""
    if isinstance(value, dict):
        return {k: int(v) if k in _UINT64 and isinstance(v, str) else _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _json(message) -> dict[str, Any]:
    # Every field, zeros included (example_index 0, value 0.0): clients index by these keys.
    return _ints(json_format.MessageToDict(message, preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True))


def _model(name: str | None, endpoint: api.Endpoint | None) -> pb.ModelRef | None:
    if endpoint is not None:
        return pb.ModelRef(endpoint=pb.OpenAIEndpoint(base_url=endpoint.base_url, model=endpoint.model,
                                                      api_key=endpoint.api_key))
    return pb.ModelRef(inference_model=name) if name is not None else None


def _spec(body: api.RunCreate) -> pb.EvaluationRunSpec:
    spec = pb.EvaluationRunSpec(task_ids=body.tasks, apply_chat_template=body.apply_chat_template, labels=body.labels)
    set_present(spec, limit=body.limit, few_shot=body.few_shot, prompt_template=body.prompt_template, seed=body.seed)
    set_present(spec.generation, max_new_tokens=body.max_new_tokens, temperature=body.temperature, top_p=body.top_p,
                samples_per_example=body.samples_per_example)
    spec.generation.stop_sequences.extend(body.stop)
    spec.retrieval.CopyFrom(pb.RetrievalTarget(tenant=body.tenant, collection=body.collection, rerank=body.rerank,
                                               mode=MODES[body.search_mode]))
    set_present(spec.retrieval, top_k=body.top_k)
    for field, ref in (("model", _model(body.model, body.endpoint)),
                       ("judge", _model(body.judge_model, body.judge_endpoint))):
        if ref is not None:
            getattr(spec, field).CopyFrom(ref)
    return spec


# -- tasks and metrics -----------------------------------------------------------------------------------


@router.get("/v1/evaluations/info", summary="The evaluation service's engine, store, sandbox and limits")
async def info(request: Request):
    stub = calls.stub(request, "evaluation")
    return _json(await call(stub.GetInfo(pb.GetInfoRequest(request_id=calls.request_id(request)))))


@router.get("/v1/evaluations/tasks", summary="List tasks (built-in and registered)")
async def list_tasks(request: Request, output_type: OutputTypeName | None = None, page_size: PageSize = 100,
                     page_token: str = ""):
    message = pb.ListTasksRequest(request_id=calls.request_id(request), page_size=page_size, page_token=page_token,
                                  output_type=OUTPUT_TYPES[output_type])
    return _json(await call(calls.stub(request, "evaluation").ListTasks(message)))


@router.get("/v1/evaluations/tasks/{task_id}", summary="Get a task with its YAML definition")
async def get_task(task_id: str, request: Request):
    message = pb.GetTaskRequest(request_id=calls.request_id(request), task_id=task_id)
    return _json(await call(calls.stub(request, "evaluation").GetTask(message)))


@router.post("/v1/evaluations/tasks", status_code=201, summary="Register a task from YAML (lm-eval vocabulary)")
async def create_task(body: api.TaskCreate, request: Request):
    message = pb.CreateTaskRequest(request_id=calls.request_id(request), yaml=body.yaml, replace=body.replace)
    return _json(await call(calls.stub(request, "evaluation").CreateTask(message)))


@router.get("/v1/evaluations/metrics", summary="List the metrics tasks can report")
async def list_metrics(request: Request, output_type: OutputTypeName | None = None):
    message = pb.ListMetricsRequest(request_id=calls.request_id(request),
                                    output_type=OUTPUT_TYPES[output_type])
    return _json(await call(calls.stub(request, "evaluation").ListMetrics(message)))


# -- runs ------------------------------------------------------------------------------------------------


@router.post("/v1/evaluations/runs", status_code=201, summary="Start an evaluation run (returns it queued)")
async def create_run(body: api.RunCreate, request: Request):
    message = pb.CreateEvaluationRunRequest(request_id=calls.request_id(request), spec=_spec(body))
    return _json(await call(calls.stub(request, "evaluation").CreateEvaluationRun(message), RENAMES))


@router.get("/v1/evaluations/runs", summary="List runs, newest first")
async def list_runs(request: Request, model: str = "", task_id: str = "", state: StateName | None = None,
                    experiment_id: str = "", page_size: PageSize = 100, page_token: str = ""):
    message = pb.ListEvaluationRunsRequest(
        request_id=calls.request_id(request), model=model, task_id=task_id, experiment_id=experiment_id,
        state=STATES[state], page_size=page_size, page_token=page_token)
    return _json(await call(calls.stub(request, "evaluation").ListEvaluationRuns(message)))


@router.get("/v1/evaluations/runs/{run_id}", summary="Get a run with its progress and metrics")
async def get_run(run_id: str, request: Request):
    message = pb.GetEvaluationRunRequest(request_id=calls.request_id(request), run_id=run_id)
    return _json(await call(calls.stub(request, "evaluation").GetEvaluationRun(message)))


@router.post("/v1/evaluations/runs/{run_id}/cancel", summary="Cancel a run (scored samples are kept)")
async def cancel_run(run_id: str, request: Request):
    message = pb.CancelEvaluationRunRequest(request_id=calls.request_id(request), run_id=run_id)
    return _json(await call(calls.stub(request, "evaluation").CancelEvaluationRun(message)))


@router.get("/v1/evaluations/runs/{run_id}/samples", summary="Page through a run's per-example records")
async def list_samples(run_id: str, request: Request, task_id: str = "", page_size: PageSize = 100,
                       page_token: str = ""):
    message = pb.ListEvaluationSamplesRequest(request_id=calls.request_id(request), run_id=run_id, task_id=task_id,
                                              page_size=page_size, page_token=page_token)
    return _json(await call(calls.stub(request, "evaluation").ListEvaluationSamples(message)))


def _frame(event: pb.EvaluationRunEvent) -> bytes:
    kind = event.WhichOneof("payload")
    payload = {"sequence": event.sequence, "run_id": event.run_id, kind: _json(getattr(event, kind))}
    return f"id: {event.sequence}\nevent: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


@router.get("/v1/evaluations/runs/{run_id}/events",
            summary="Follow a run's events as SSE (progress, partial metrics, task results, state changes)")
async def run_events(run_id: str, request: Request, after: After = 0,
                     last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None):
    if last_event_id is not None and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    # No deadline: following a run lasts as long as the run; the client leaving cancels the call.
    stream = calls.stub(request, "evaluation").StreamEvaluationRunEvents(pb.StreamEvaluationRunEventsRequest(
        request_id=calls.request_id(request), run_id=run_id, after_sequence=after), timeout=NO_DEADLINE)
    first = await call(stream.read())  # an unknown run is a 404 before the stream starts

    async def frames():
        try:
            message = first
            while message is not grpc.aio.EOF:
                yield _frame(message.event)
                message = await call(stream.read())
        except GatewayError as exc:
            error = {"message": exc.message, "type": exc.type, "code": exc.code}
            yield f"event: error\ndata: {json.dumps({'error': error})}\n\n".encode()
        finally:
            stream.cancel()

    return sse.EventStream(frames())


# -- experiments and comparisons -------------------------------------------------------------------------


@router.post("/v1/evaluations/experiments", status_code=201,
             summary="Start one run per variant (prompt A/B, model vs adapter, dense vs hybrid) in one request")
async def create_experiment(body: api.ExperimentCreate, request: Request):
    variants = []
    for v in body.variants:
        variant = pb.Variant(name=v.name, search_mode=MODES[v.search_mode])
        set_present(variant, prompt_template=v.prompt_template)
        ref = _model(v.model, v.endpoint)
        if ref is not None:
            variant.model.CopyFrom(ref)
        variants.append(variant)
    message = pb.CreateExperimentRequest(request_id=calls.request_id(request), base=_spec(body.base), variants=variants)
    return _json(await call(calls.stub(request, "evaluation").CreateExperiment(message), RENAMES))


@router.post("/v1/evaluations/comparisons",
             summary="Compare runs of the same task: paired differences, bootstrap CIs, paired significance test")
async def compare_runs(body: api.ComparisonCreate, request: Request):
    message = pb.CompareEvaluationRunsRequest(request_id=calls.request_id(request), run_ids=body.run_ids,
                                              baseline_run_id=body.baseline_run_id, task_id=body.task_id,
                                              include_differences=body.include_differences)
    set_present(message, confidence=body.confidence, resamples=body.resamples)
    return _json(await call(calls.stub(request, "evaluation").CompareEvaluationRuns(message)))
