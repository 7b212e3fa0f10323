"""Fine-tuning routes: OpenAI's ``/v1/files`` and ``/v1/fine_tuning/jobs`` (the official ``openai`` SDK's
``files`` and ``fine_tuning.jobs`` resources work unchanged), job events as server-sent events, deleting a
fine-tuned model (``DELETE /v1/models/{model}``), and native routes under ``/v1/finetune``.

``method`` extension: OpenAI's ``{"type": "supervised" | "dpo", "<type>": {"hyperparameters": {...}}}`` takes
any method of the service's registry as ``type`` ("lora", "prompt_tuning", "prefix_tuning", "full",
"reward_model"; "supervised" is LoRA). ``hyperparameters`` holds OpenAI's ``n_epochs``, ``batch_size`` and
``learning_rate_multiplier`` ("auto" or a value), our shared extras (``max_steps``, ``max_seq_length``,
``warmup_ratio``, ``checkpoint_steps``, ``eval_steps``, ``gradient_accumulation_steps``, ``weight_decay``,
``lr_scheduler``) and the method's own settings (``beta``, ``rank``, ``alpha``, ``target_modules``,
``num_virtual_tokens``, ...; see ``GET /v1/finetune/info``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from genai.finetune.v1 import finetune_service_pb2 as pb
from genai_core.limits import FINETUNE
from genai_core.structs import struct_to_dict
from google.protobuf import json_format, struct_pb2

from genai_gateway.errors import GatewayError, call, invalid_argument
from genai_gateway.openapi import stream_response
from genai_gateway.routes import calls, sse
from genai_gateway.routes import finetune_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["fine-tuning"], route_class=ApiRoute)

STREAM_TIMEOUT = 7 * 24 * 3600.0  # an event stream lives as long as its job
STATUS = {v: k.removeprefix("STATE_").lower() for k, v in pb.TuningJob.State.items()}
LEVELS = {pb.TuningJobEvent.LEVEL_INFO: "info", pb.TuningJobEvent.LEVEL_WARNING: "warn",
          pb.TuningJobEvent.LEVEL_ERROR: "error", pb.TuningJobEvent.LEVEL_UNSPECIFIED: "info"}
FORMATS = {v: k.removeprefix("DATASET_FORMAT_").lower() for k, v in pb.DatasetFormat.items()}
OPENAI_TYPES = {"lora": "supervised"}  # how a job's method is reported back; others keep their registry name
PURPOSES = ("fine-tune", "fine-tune-results")  # what the service stores files for (it checks the purpose)
FILE_RENAMES = {r"^content$": "file", r"^line\[": "file.line["}


def _seconds(ts) -> int | None:
    return ts.seconds if ts.seconds or ts.nanos else None


def _job_renames(kind: str) -> dict[str, str]:
    where = f"method.{kind}.hyperparameters" if kind else "hyperparameters"
    return {r"^training_dataset_id": "training_file", r"^validation_dataset_id": "validation_file",
            r"^base_model": "model", r"^hyperparameters\.": f"{where}.", r"^method_config\.": f"{where}.",
            r"^method$": "method.type"}


# -- JSON shapes ---------------------------------------------------------------------------------------


def _file(d: pb.Dataset) -> dict[str, Any]:
    return {"id": d.id, "object": "file", "bytes": d.size_bytes, "created_at": d.create_time.seconds,
            "filename": d.filename, "purpose": d.purpose, "status": "processed", "status_details": None,
            "expires_at": None, "format": FORMATS[d.format], "record_count": d.record_count,
            "token_count": d.token_count, "sha256": d.sha256}


def _metrics(m: pb.TrainingMetrics) -> dict[str, Any]:
    out: dict[str, Any] = {"step": m.step, "total_steps": m.total_steps, "epoch": m.epoch,
                           "trained_tokens": m.trained_tokens}
    for name, key in (("train_loss", "train_loss"), ("eval_loss", "valid_loss"), ("learning_rate", "learning_rate"),
                      ("tokens_per_second", "tokens_per_second"), ("eta_seconds", "eta_seconds")):
        if m.HasField(name):
            out[key] = getattr(m, name)
    out.update(dict(m.extra))
    return out


def _hyperparameters(h: pb.Hyperparameters) -> dict[str, Any]:
    out = {f.name: getattr(h, f.name) for f in h.DESCRIPTOR.fields if f.name != "lr_scheduler" and h.HasField(f.name)}
    if h.lr_scheduler:
        out["lr_scheduler"] = h.lr_scheduler
    return out


def _job(j: pb.TuningJob) -> dict[str, Any]:
    resolved = _hyperparameters(j.hyperparameters)
    kind = OPENAI_TYPES.get(j.method, j.method)
    error = None
    if j.HasField("error"):  # validation errors fail the create request, so a job's error names no parameter
        error = {"code": (j.error.reason or j.error.code).lower(), "message": j.error.message, "param": None}
    return {
        "id": j.id, "object": "fine_tuning.job", "created_at": j.create_time.seconds, "error": error,
        "fine_tuned_model": j.fine_tuned_model or None, "finished_at": _seconds(j.end_time),
        "hyperparameters": {k: resolved.get(k) for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
        "model": j.base_model, "organization_id": "genai", "result_files": [], "seed": j.seed,
        "status": STATUS[j.state], "trained_tokens": j.trained_tokens or None,
        "training_file": j.training_dataset_id, "validation_file": j.validation_dataset_id or None,
        "estimated_finish": _seconds(j.estimated_finish_time), "integrations": [],
        "metadata": dict(j.metadata) or None,
        "method": {"type": kind, kind: {"hyperparameters": {**resolved, **struct_to_dict(j.method_config)}}},
        # ours: the served artifact, and live progress
        "artifact_id": j.artifact_id or None, "progress": _metrics(j.progress),
    }


def _event(e: pb.TuningJobEvent) -> dict[str, Any]:
    metrics = e.type == pb.TuningJobEvent.TYPE_METRICS
    data = _metrics(e.metrics) if metrics else struct_to_dict(e.data)
    if e.state:
        data["status"] = STATUS[e.state]
    return {"id": e.id, "object": "fine_tuning.job.event", "created_at": e.create_time.seconds,
            "level": LEVELS[e.level], "message": e.message, "data": data or None,
            "type": "metrics" if metrics else "message"}


def _checkpoint(c: pb.Checkpoint) -> dict[str, Any]:
    return {"id": c.id, "object": "fine_tuning.job.checkpoint", "created_at": c.create_time.seconds,
            "fine_tuned_model_checkpoint": c.fine_tuned_model_checkpoint, "fine_tuning_job_id": c.job_id,
            "metrics": _metrics(c.metrics), "step_number": c.step}


def _artifact(a: pb.Artifact) -> dict[str, Any]:
    out = json_format.MessageToDict(a, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    out["size_bytes"] = int(out["size_bytes"])
    out["kind"] = out["kind"].removeprefix("KIND_").lower()
    return out


# -- requests ------------------------------------------------------------------------------------------


def _split(values: api.Hyperparameters) -> tuple[pb.Hyperparameters, dict[str, Any]]:
    """Validated hyperparameters into the shared message and the method's own settings; "auto" is unset."""
    shared = pb.Hyperparameters()
    for key in api.Hyperparameters.model_fields:
        value = getattr(values, key)
        if value not in ("auto", None):
            setattr(shared, key, value)
    own = {k: v for k, v in (values.model_extra or {}).items() if v not in ("auto", None)}
    return shared, own


def _struct(value: dict[str, Any], param: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    try:
        out.update(value)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer beyond a double's range
        raise invalid_argument(param, f"settings must be JSON values that fit a double: {exc}") from None
    return out


def _create_request(body: api.JobCreate, rid: str) -> tuple[pb.CreateTuningJobRequest, str]:
    if body.integrations:
        raise invalid_argument("integrations", "integrations (Weights & Biases) are not supported; stream the job's events")
    kind, settings = "", body.hyperparameters or api.MethodHyperparameters()
    if body.method is not None:
        kind = body.method.type
        section = (body.method.model_extra or {}).get(kind)
        settings = section.hyperparameters if section is not None else api.MethodHyperparameters()
    where = f"method.{kind}.hyperparameters" if kind else "hyperparameters"
    shared, own = _split(settings)
    message = pb.CreateTuningJobRequest(
        request_id=rid, base_model=body.model, training_dataset_id=body.training_file,
        validation_dataset_id=body.validation_file or "", method=kind, hyperparameters=shared,
        suffix=body.suffix or "", metadata=body.metadata or {})
    if own:
        message.method_config.CopyFrom(_struct(own, where))
    if body.seed is not None:
        message.seed = body.seed
    return message, kind


Limit = Annotated[int, Query(ge=1, le=FINETUNE.max_page_size, description="the page size")]
After = Annotated[str | None, Query(description="the id of the last item of the previous page")]


# -- files ---------------------------------------------------------------------------------------------


@router.post("/v1/files", response_model=api.FileObject, summary="Upload a training file (multipart: file, purpose)",
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file", "purpose"], "properties": {
                     "file": {"type": "string", "format": "binary",
                              "description": f"JSON Lines (or .txt raw text), at most {FINETUNE.max_dataset_bytes} "
                                             f"bytes and {FINETUNE.max_dataset_records} records"},
                     "purpose": {"type": "string", "enum": list(PURPOSES)}},
                 "additionalProperties": False}}}}})
async def create_file(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid_argument("file", "upload the file as multipart/form-data with fields `file` and `purpose`")
    form = await request.form()
    # The shape of the form (the documented fields, each once, of the right kind); the service checks the rest.
    unknown = sorted(set(form.keys()) - {"file", "purpose"})
    if any(k.startswith("expires_after") for k in unknown):
        raise invalid_argument("expires_after", "files here do not expire; delete them with DELETE /v1/files/{file_id}")
    if unknown:
        raise invalid_argument(unknown[0], "unknown form field; send only `file` and `purpose`")
    uploads = form.getlist("file")
    if len(uploads) != 1 or isinstance(uploads[0], str):
        raise invalid_argument("file", "attach exactly one JSONL file as the `file` field (a file part, with a filename)")
    purposes = form.getlist("purpose")
    if len(purposes) != 1 or not isinstance(purposes[0], str) or purposes[0] not in PURPOSES:
        raise invalid_argument("purpose", f"set purpose to one of {', '.join(PURPOSES)}")
    upload, purpose = uploads[0], purposes[0]
    content = await upload.read()
    settings = request.app.state.settings
    reply = await calls.unary(request, calls.stub(request, "finetune").CreateDataset(
        pb.CreateDatasetRequest(request_id=calls.request_id(request), filename=upload.filename or "upload.jsonl",
                                content=content, purpose=purpose), timeout=settings.train_timeout), FILE_RENAMES)
    return _file(reply.dataset)


@router.get("/v1/files", response_model=api.FileList, summary="List files, newest first")
async def list_files(request: Request, after: After = None, limit: Limit = FINETUNE.default_page_size,
                     purpose: Annotated[str | None, Query(description="only files of this purpose")] = None) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").ListDatasets(pb.ListDatasetsRequest(
        request_id=calls.request_id(request), page_size=limit, after=after or "", purpose=purpose or "")))
    data = [_file(d) for d in reply.datasets]
    return {"object": "list", "data": data, "has_more": reply.has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.get("/v1/files/{file_id}", response_model=api.FileObject, summary="Get a file")
async def get_file(file_id: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").GetDataset(
        pb.GetDatasetRequest(request_id=calls.request_id(request), dataset_id=file_id)))
    return _file(reply.dataset)


@router.get("/v1/files/{file_id}/content", summary="Download a file's content", response_class=Response,
            responses={200: {"description": "The file's bytes, as uploaded",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}})
async def file_content(file_id: str, request: Request) -> Response:
    reply = await call(calls.stub(request, "finetune").GetDatasetContent(
        pb.GetDatasetContentRequest(request_id=calls.request_id(request), dataset_id=file_id)))
    return Response(reply.content, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}", response_model=api.FileDeleted, summary="Delete a file")
async def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").DeleteDataset(
        pb.DeleteDatasetRequest(request_id=calls.request_id(request), dataset_id=file_id)))
    return {"id": reply.dataset_id, "object": "file", "deleted": True}


# -- jobs ----------------------------------------------------------------------------------------------


@router.post("/v1/fine_tuning/jobs", response_model=api.FineTuningJob, summary="Create a fine-tuning job")
async def create_job(body: api.JobCreate, request: Request) -> dict[str, Any]:
    message, kind = _create_request(body, calls.request_id(request))
    settings = request.app.state.settings
    reply = await calls.unary(request, calls.stub(request, "finetune").CreateTuningJob(
        message, timeout=settings.train_timeout), _job_renames(kind))
    return _job(reply.job)


@router.get("/v1/fine_tuning/jobs", response_model=api.JobList, summary="List fine-tuning jobs, newest first")
async def list_jobs(request: Request, after: After = None, limit: Limit = FINETUNE.default_page_size) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").ListTuningJobs(pb.ListTuningJobsRequest(
        request_id=calls.request_id(request), page_size=limit, after=after or "")))
    return {"object": "list", "data": [_job(j) for j in reply.jobs], "has_more": reply.has_more}


@router.get("/v1/fine_tuning/jobs/{job_id}", response_model=api.FineTuningJob, summary="Get a fine-tuning job")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").GetTuningJob(
        pb.GetTuningJobRequest(request_id=calls.request_id(request), job_id=job_id)))
    return _job(reply.job)


def _control(verb: str, rpc: str, message_type):
    async def control(job_id: str, request: Request) -> dict[str, Any]:
        stub = calls.stub(request, "finetune")
        reply = await call(getattr(stub, rpc)(message_type(request_id=calls.request_id(request), job_id=job_id)))
        return _job(reply.job)

    router.add_api_route(f"/v1/fine_tuning/jobs/{{job_id}}/{verb}", control, methods=["POST"],
                         response_model=api.FineTuningJob, summary=f"{verb.capitalize()} a fine-tuning job")


_control("cancel", "CancelTuningJob", pb.CancelTuningJobRequest)
_control("pause", "PauseTuningJob", pb.PauseTuningJobRequest)
_control("resume", "ResumeTuningJob", pb.ResumeTuningJobRequest)


# An event id (ftevent-<job>-<sequence>) or its bare sequence number: ASCII digits ("4²" passes str.isdigit),
# few enough for the proto's uint64 and JSON's exact integers.
EVENT_ID = re.compile(r"(?:ftevent-(?:.*-)?)?([0-9]{1,15})", re.DOTALL)


def _sequence(event_id: str, param: str) -> int:
    found = EVENT_ID.fullmatch(event_id)
    if found is None:
        raise invalid_argument(param, f"'{event_id}' is not an event id (ftevent-...) or sequence number")
    return int(found.group(1))


@router.get("/v1/fine_tuning/jobs/{job_id}/events", response_model=api.EventList,
            summary="List a job's events, newest first; with stream=true (or Accept: text/event-stream) follow them "
                    "as server-sent events, oldest first, until the job finishes",
            responses=stream_response("A page of events, or (stream=true) fine_tuning.job.event events"))
async def list_events(job_id: str, request: Request, after: After = None, limit: Limit = FINETUNE.default_page_size,
                      stream: bool = False):
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        last = request.headers.get("last-event-id")
        if last:
            return await _stream_events(request, job_id, _sequence(last, "Last-Event-ID"))
        return await _stream_events(request, job_id, _sequence(after, "after") if after else 0)
    reply = await call(calls.stub(request, "finetune").ListTuningJobEvents(pb.ListTuningJobEventsRequest(
        request_id=calls.request_id(request), job_id=job_id, page_size=limit, after=after or "")))
    return {"object": "list", "data": [_event(e) for e in reply.events], "has_more": reply.has_more}


async def _stream_events(request: Request, job_id: str, after_sequence: int) -> sse.EventStream:
    grpc_call = calls.stub(request, "finetune").StreamTuningJobEvents(pb.StreamTuningJobEventsRequest(
        request_id=calls.request_id(request), job_id=job_id, after_sequence=after_sequence), timeout=STREAM_TIMEOUT)
    first = await call(grpc_call.read())  # a bad job id is an HTTP 404, before the stream starts

    async def frames():
        message = first
        while message is not grpc.aio.EOF:
            event = _event(message.event)
            payload = json.dumps(event, separators=(",", ":"))
            yield f"id: {message.event.sequence}\nevent: {event['type']}\ndata: {payload}\n\n".encode()
            message = await call(grpc_call.read())

    def error_frame(exc: GatewayError) -> bytes:
        return sse.data({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})

    return sse.EventStream(sse.events(frames(), [grpc_call], error_frame, sse.DONE))


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", response_model=api.CheckpointList,
            summary="List a job's checkpoints, newest first")
async def list_checkpoints(job_id: str, request: Request, after: After = None,
                           limit: Limit = FINETUNE.default_checkpoint_page_size) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").ListTuningJobCheckpoints(pb.ListTuningJobCheckpointsRequest(
        request_id=calls.request_id(request), job_id=job_id, page_size=limit, after=after or "")))
    data = [_checkpoint(c) for c in reply.checkpoints]
    return {"object": "list", "data": data, "has_more": reply.has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.delete("/v1/models/{model:path}", response_model=api.ModelDeleted,
               summary="Delete a fine-tuned model: unload it from the inference service, then delete its files")
async def delete_model(model: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").DeleteArtifact(
        pb.DeleteArtifactRequest(request_id=calls.request_id(request), artifact_id=model)))
    return {"id": reply.artifact.model_id or reply.artifact.id, "object": "model", "deleted": True}


# -- native --------------------------------------------------------------------------------------------


@router.get("/v1/finetune/info", summary="Base models, methods (with their settings and defaults) and limits")
async def info(request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").GetInfo(pb.GetInfoRequest(request_id=calls.request_id(request))))
    out = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    for method in out.get("methods", []):
        method["dataset_formats"] = [f.removeprefix("DATASET_FORMAT_").lower() for f in method["dataset_formats"]]
        method["artifact_kind"] = method["artifact_kind"].removeprefix("KIND_").lower()
    return out


@router.post("/v1/finetune/jobs", response_model=api.FineTuningJob,
             summary="Create a job with the gRPC request's fields (method, method_config, hyperparameters)")
async def create_native_job(body: api.NativeJobCreate, request: Request) -> dict[str, Any]:
    shared, _ = _split(body.hyperparameters)  # no method settings here (the model forbids them): method_config
    message = pb.CreateTuningJobRequest(
        request_id=calls.request_id(request), base_model=body.base_model, training_dataset_id=body.training_dataset_id,
        validation_dataset_id=body.validation_dataset_id, method=body.method, hyperparameters=shared,
        suffix=body.suffix, metadata=body.metadata, method_config=_struct(body.method_config, "method_config"))
    if body.seed is not None:
        message.seed = body.seed
    settings = request.app.state.settings
    reply = await calls.unary(request, calls.stub(request, "finetune").CreateTuningJob(
        message, timeout=settings.train_timeout))
    return _job(reply.job)


@router.get("/v1/finetune/artifacts", summary="List artifacts (adapters, models, reward models), newest first")
async def list_artifacts(request: Request, after: After = None, limit: Limit = FINETUNE.default_page_size,
                         job_id: Annotated[str | None, Query(description="only this job's artifacts")] = None) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").ListArtifacts(pb.ListArtifactsRequest(
        request_id=calls.request_id(request), page_size=limit, after=after or "", job_id=job_id or "")))
    return {"object": "list", "data": [_artifact(a) for a in reply.artifacts], "has_more": reply.has_more}


@router.get("/v1/finetune/artifacts/{artifact_id:path}", summary="Get an artifact by id or by fine-tuned model name")
async def get_artifact(artifact_id: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").GetArtifact(
        pb.GetArtifactRequest(request_id=calls.request_id(request), artifact_id=artifact_id)))
    return _artifact(reply.artifact)


@router.delete("/v1/finetune/artifacts/{artifact_id:path}", summary="Unload and delete an artifact")
async def delete_artifact(artifact_id: str, request: Request) -> dict[str, Any]:
    reply = await call(calls.stub(request, "finetune").DeleteArtifact(
        pb.DeleteArtifactRequest(request_id=calls.request_id(request), artifact_id=artifact_id)))
    return {**_artifact(reply.artifact), "deleted": True}
