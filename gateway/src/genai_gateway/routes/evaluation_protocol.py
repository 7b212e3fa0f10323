"""HTTP shapes of the evaluation routes (native): tasks, runs, experiments, comparisons.

Integer bounds come from the proto field types and ``genai_core.limits.EVALUATION`` (the service's own
defaults), so a value no deployment accepts is a 400 here and nothing can overflow a proto field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from genai_core.limits import EVALUATION as LIMITS
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import JSON_SAFE_MAX

SearchModeName = Literal["dense", "sparse", "hybrid"]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoint(_Strict):
    base_url: str = Field(min_length=1, description="an OpenAI-compatible server, such as http://vllm:8000/v1")
    model: Name
    api_key: str = Field("", description="stored with the run to resume it; never returned")


class TaskCreate(_Strict):
    yaml: str = Field(min_length=1, description="the task definition (lm-eval vocabulary: task, output_type, "
                                                "dataset_path, doc_to_text, doc_to_target, doc_to_choice, "
                                                "metric_list, filter_list, ...)")
    replace: bool = False


class RunCreate(_Strict):
    tasks: list[Name] = Field(min_length=1, description="task ids (GET /v1/evaluations/tasks)")
    model: str | None = Field(None, description="an inference-service model or adapter; unset: its default")
    endpoint: Endpoint | None = Field(None, description="evaluate an OpenAI-compatible server instead")
    limit: int | None = Field(None, ge=1, le=LIMITS.max_examples, description="examples per task; unset: all")
    few_shot: int | None = Field(None, ge=0, le=LIMITS.max_few_shot)
    max_new_tokens: int | None = Field(None, ge=1, le=LIMITS.max_new_tokens)
    temperature: float | None = Field(None, ge=0, le=LIMITS.max_temperature)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: list[str] = []
    samples_per_example: int | None = Field(None, ge=1, le=LIMITS.max_samples_per_example,
                                            description="answers per example (pass@k needs k)")
    collection: str = Field("", description="retrieval/RAG tasks: search this collection (else the task builds its own)")
    tenant: str = ""
    search_mode: SearchModeName | None = None
    top_k: int | None = Field(None, ge=1, le=LIMITS.max_top_k)
    rerank: bool = False
    judge_model: str | None = Field(None, description="the judge of LLM-judged RAG metrics; unset: the model")
    judge_endpoint: Endpoint | None = None
    apply_chat_template: bool = False
    prompt_template: str | None = Field(None, description="a Jinja template replacing the task's doc_to_text")
    seed: int | None = Field(None, ge=0, le=JSON_SAFE_MAX)
    labels: dict[str, str] = {}


class VariantIn(_Strict):
    name: Name
    model: str | None = None
    endpoint: Endpoint | None = None
    prompt_template: str | None = None
    search_mode: SearchModeName | None = None


class ExperimentCreate(_Strict):
    base: RunCreate
    variants: list[VariantIn] = Field(min_length=2)


class ComparisonCreate(_Strict):
    run_ids: list[Name] = Field(min_length=2)
    baseline_run_id: str = ""
    task_id: str = ""
    confidence: float | None = Field(None, ge=0.5, lt=1)
    resamples: int | None = Field(None, ge=LIMITS.min_resamples, le=LIMITS.max_resamples)
    include_differences: bool = False
