"""The evaluation API's protobuf <-> domain values, both directions. Nothing else touches protobuf."""

from __future__ import annotations

from collections.abc import Sequence

from genai.evaluation.v1 import evaluation_service_pb2 as pb
from genai.type.v1 import error_pb2
from genai_core.errors import InvalidArgument
from genai_core.rpc import usage
from google.protobuf import struct_pb2, timestamp_pb2

from genai_evaluation import metrics as metric_registry
from genai_evaluation.taskspec import TaskSpec
from genai_evaluation.types import (
    Comparison,
    Endpoint,
    ErrorInfo,
    Event,
    EventKind,
    GenerationParams,
    MetricValue,
    ModelRef,
    OutputType,
    Progress,
    RetrievalTarget,
    Run,
    RunSpec,
    RunState,
    Sample,
    SearchMode,
    Variant,
)

OUTPUT_TYPES = {
    OutputType.MULTIPLE_CHOICE: pb.OUTPUT_TYPE_MULTIPLE_CHOICE,
    OutputType.LOGLIKELIHOOD: pb.OUTPUT_TYPE_LOGLIKELIHOOD,
    OutputType.LOGLIKELIHOOD_ROLLING: pb.OUTPUT_TYPE_LOGLIKELIHOOD_ROLLING,
    OutputType.GENERATE_UNTIL: pb.OUTPUT_TYPE_GENERATE_UNTIL,
    OutputType.RETRIEVAL: pb.OUTPUT_TYPE_RETRIEVAL,
    OutputType.RAG: pb.OUTPUT_TYPE_RAG,
}
OUTPUT_TYPES_IN = {v: k for k, v in OUTPUT_TYPES.items()}
SEARCH_MODES = {SearchMode.DENSE: pb.SEARCH_MODE_DENSE, SearchMode.SPARSE: pb.SEARCH_MODE_SPARSE,
                SearchMode.HYBRID: pb.SEARCH_MODE_HYBRID}
SEARCH_MODES_IN = {v: k for k, v in SEARCH_MODES.items()}
STATES = {RunState.QUEUED: pb.EvaluationRun.STATE_QUEUED, RunState.RUNNING: pb.EvaluationRun.STATE_RUNNING,
          RunState.SUCCEEDED: pb.EvaluationRun.STATE_SUCCEEDED, RunState.FAILED: pb.EvaluationRun.STATE_FAILED,
          RunState.CANCELLED: pb.EvaluationRun.STATE_CANCELLED}
STATES_IN = {v: k for k, v in STATES.items()}


def _enum(value: int, table: dict, field: str):
    """A proto enum value as a domain enum; UNSPECIFIED (0) is None; unknown numbers name the field."""
    if value == 0:
        return None
    if value not in table:
        raise InvalidArgument.for_field(field, f"unknown value {value}")
    return table[value]


def output_type(value: int, field: str = "output_type") -> OutputType | None:
    return _enum(value, OUTPUT_TYPES_IN, field)


def state(value: int, field: str = "state") -> RunState | None:
    return _enum(value, STATES_IN, field)


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


# -- requests -> domain ------------------------------------------------------------------------------------


def model_ref(message: pb.ModelRef, field: str) -> ModelRef | None:
    which = message.WhichOneof("target")
    if which == "endpoint":
        e = message.endpoint
        return ModelRef(endpoint=Endpoint(e.base_url, e.model, e.api_key))
    if which == "inference_model":
        return ModelRef(inference_model=message.inference_model)
    return None


def run_spec(message: pb.EvaluationRunSpec, field: str = "spec") -> RunSpec:
    g, r = message.generation, message.retrieval
    return RunSpec(
        task_ids=tuple(message.task_ids),
        model=(model_ref(message.model, f"{field}.model") if message.HasField("model") else None) or ModelRef(),
        limit=message.limit if message.HasField("limit") else None,
        few_shot=message.few_shot if message.HasField("few_shot") else None,
        generation=GenerationParams(
            max_new_tokens=g.max_new_tokens if g.HasField("max_new_tokens") else None,
            temperature=g.temperature if g.HasField("temperature") else None,
            top_p=g.top_p if g.HasField("top_p") else None,
            stop_sequences=tuple(g.stop_sequences),
            samples_per_example=g.samples_per_example if g.HasField("samples_per_example") else None,
        ),
        retrieval=RetrievalTarget(r.tenant, r.collection, _enum(r.mode, SEARCH_MODES_IN, f"{field}.retrieval.mode"),
                                  r.top_k if r.HasField("top_k") else None, r.rerank),
        judge=model_ref(message.judge, f"{field}.judge") if message.HasField("judge") else None,
        apply_chat_template=message.apply_chat_template,
        prompt_template=message.prompt_template if message.HasField("prompt_template") else None,
        seed=message.seed if message.HasField("seed") else 1234,
        labels=dict(message.labels),
    )


def variants(messages: Sequence[pb.Variant]) -> list[Variant]:
    return [
        Variant(
            name=v.name,
            model=model_ref(v.model, f"variants[{i}].model") if v.HasField("model") else None,
            prompt_template=v.prompt_template if v.HasField("prompt_template") else None,
            search_mode=_enum(v.search_mode, SEARCH_MODES_IN, f"variants[{i}].search_mode"),
        )
        for i, v in enumerate(messages)
    ]


# -- domain -> responses -----------------------------------------------------------------------------------


def _model_ref(ref: ModelRef) -> pb.ModelRef:
    if ref.endpoint is not None:
        return pb.ModelRef(endpoint=pb.OpenAIEndpoint(base_url=ref.endpoint.base_url, model=ref.endpoint.model))
    return pb.ModelRef(inference_model=ref.inference_model)


def spec_message(spec: RunSpec) -> pb.EvaluationRunSpec:
    g, r = spec.generation, spec.retrieval
    out = pb.EvaluationRunSpec(
        model=_model_ref(spec.model), task_ids=list(spec.task_ids), apply_chat_template=spec.apply_chat_template,
        seed=spec.seed, labels=spec.labels,
        generation=pb.GenerationParams(stop_sequences=list(g.stop_sequences)),
        retrieval=pb.RetrievalTarget(tenant=r.tenant, collection=r.collection, rerank=r.rerank,
                                     mode=SEARCH_MODES[r.mode] if r.mode else pb.SEARCH_MODE_UNSPECIFIED),
    )
    for name in ("limit", "few_shot", "prompt_template"):
        if getattr(spec, name) is not None:
            setattr(out, name, getattr(spec, name))
    for name in ("max_new_tokens", "temperature", "top_p", "samples_per_example"):
        if getattr(g, name) is not None:
            setattr(out.generation, name, getattr(g, name))
    if r.top_k is not None:
        out.retrieval.top_k = r.top_k
    if spec.judge is not None:
        out.judge.CopyFrom(_model_ref(spec.judge))
    return out


def metric_result(m: MetricValue) -> pb.MetricResult:
    out = pb.MetricResult(task_id=m.task_id, metric=m.metric, filter=m.filter, value=m.value,
                          sample_count=m.sample_count)
    for name in ("stderr", "ci_lower", "ci_upper"):
        if getattr(m, name) is not None:
            setattr(out, name, getattr(m, name))
    return out


def progress(p: Progress) -> pb.Progress:
    out = pb.Progress(examples_done=p.done, examples_total=p.total, current_task_id=p.current_task,
                      examples_per_second=p.per_second)
    if p.eta_seconds is not None:
        out.eta.FromNanoseconds(int(p.eta_seconds * 1e9))
    return out


def _error(e: ErrorInfo) -> error_pb2.ErrorDetail:
    return error_pb2.ErrorDetail(code=e.code, reason=e.reason, message=e.message)


def run(r: Run) -> pb.EvaluationRun:
    out = pb.EvaluationRun(
        id=r.id, spec=spec_message(r.spec.redacted()), experiment_id=r.experiment_id, variant=r.variant,
        state=STATES[r.state], progress=progress(r.progress), results=[metric_result(m) for m in r.results],
        usage=usage(r.usage.prompt_tokens, r.usage.completion_tokens), last_sequence=r.last_sequence,
        resume_count=r.resume_count,
    )
    if r.error is not None:
        out.error.CopyFrom(_error(r.error))
    for name in ("create_time", "start_time", "end_time", "update_time"):
        value = _timestamp(getattr(r, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out


def _metric_from_json(m: dict) -> MetricValue:
    return MetricValue(m["task_id"], m["metric"], m["value"], m["sample_count"], m.get("filter", ""), m.get("stderr"),
                       m.get("ci_lower"), m.get("ci_upper"))


def event(e: Event) -> pb.EvaluationRunEvent:
    out = pb.EvaluationRunEvent(sequence=e.sequence, run_id=e.run_id, create_time=_timestamp(e.time))
    p = e.payload
    if e.kind == EventKind.PROGRESS:
        out.progress.CopyFrom(progress(Progress(p["done"], p["total"], p["current_task"], p["per_second"],
                                                p.get("eta_seconds"))))
    elif e.kind == EventKind.PARTIAL_METRICS:
        out.partial_metrics.CopyFrom(pb.MetricsUpdate(results=[metric_result(_metric_from_json(m))
                                                               for m in p["results"]]))
    elif e.kind == EventKind.TASK_COMPLETE:
        out.task_complete.CopyFrom(pb.TaskComplete(task_id=p["task_id"], results=[
            metric_result(_metric_from_json(m)) for m in p["results"]]))
    elif e.kind == EventKind.STATE_CHANGE:
        previous = RunState(p["previous"]) if p["previous"] in {s.value for s in RunState} else None
        out.state_change.CopyFrom(pb.StateChange(previous_state=STATES[previous] if previous else 0,
                                                 state=STATES[RunState(p["state"])]))
    else:
        out.error.CopyFrom(error_pb2.ErrorDetail(code=p["code"], reason=p["reason"], message=p["message"]))
    return out


def sample(s: Sample) -> pb.EvaluationSample:
    document = struct_pb2.Struct()
    document.update(s.document)
    return pb.EvaluationSample(
        task_id=s.task_id, example_index=s.index, document=document, prompt=s.prompt, target=s.target,
        choices=list(s.choices), loglikelihoods=list(s.loglikelihoods), responses=list(s.responses),
        filtered_responses=s.filtered, scores=s.scores, retrieved_ids=list(s.retrieved_ids),
        usage=usage(s.usage.prompt_tokens, s.usage.completion_tokens), trace_id=s.trace_id,
        execution_results=list(s.execution_results),
    )


def task(t: TaskSpec, origin: str, example_count: int) -> pb.Task:
    return pb.Task(id=t.id, description=t.summary, output_type=OUTPUT_TYPES[t.output_type],
                   metric_names=list(t.score_names), example_count=example_count, default_few_shot=t.num_fewshot,
                   version=t.version, group=t.group, dataset=t.dataset_label, origin=origin, yaml=t.yaml,
                   filter_names=list(t.filter_names))


def metric(m: metric_registry.Metric) -> pb.Metric:
    return pb.Metric(name=m.name, description=m.description, higher_is_better=m.higher_is_better,
                     aggregation=m.aggregation, output_types=[OUTPUT_TYPES[t] for t in m.output_types])


def comparison(c: Comparison) -> pb.RunComparison:
    return pb.RunComparison(
        run_id=c.run_id, task_id=c.task_id, metric=c.metric, filter=c.filter, paired_count=c.paired_count,
        baseline_value=c.baseline_value, value=c.value, difference=c.difference, ci_lower=c.ci_lower,
        ci_upper=c.ci_upper, p_value=c.p_value, test=c.test, wins=c.wins, losses=c.losses, ties=c.ties,
        differences=[pb.SampleDifference(example_index=i, baseline_score=a, score=b) for i, a, b in c.differences],
    )
