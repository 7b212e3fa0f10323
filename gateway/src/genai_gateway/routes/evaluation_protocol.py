"""HTTP shapes of the evaluation routes (native): tasks, runs, experiments, comparisons."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SearchModeName = Literal["dense", "sparse", "hybrid"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoint(_Strict):
    base_url: str = Field(description="an OpenAI-compatible server, such as http://vllm:8000/v1")
    model: str
    api_key: str = Field("", description="stored with the run to resume it; never returned")


class TaskCreate(_Strict):
    yaml: str = Field(description="the task definition (lm-eval vocabulary: task, output_type, dataset_path, "
                                  "doc_to_text, doc_to_target, doc_to_choice, metric_list, filter_list, ...)")
    replace: bool = False


class RunCreate(_Strict):
    tasks: list[str] = Field(min_length=1, description="task ids (GET /v1/evaluations/tasks)")
    model: str | None = Field(None, description="an inference-service model or adapter; unset: its default")
    endpoint: Endpoint | None = Field(None, description="evaluate an OpenAI-compatible server instead")
    limit: int | None = Field(None, ge=1, description="examples per task; unset: all")
    few_shot: int | None = Field(None, ge=0, le=64)
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: list[str] = []
    samples_per_example: int | None = Field(None, ge=1, description="answers per example (pass@k needs k)")
    collection: str = Field("", description="retrieval/RAG tasks: search this collection (else the task builds its own)")
    tenant: str = ""
    search_mode: SearchModeName | None = None
    top_k: int | None = Field(None, ge=1)
    rerank: bool = False
    judge_model: str | None = Field(None, description="the judge of LLM-judged RAG metrics; unset: the model")
    judge_endpoint: Endpoint | None = None
    apply_chat_template: bool = False
    prompt_template: str | None = Field(None, description="a Jinja template replacing the task's doc_to_text")
    seed: int | None = Field(None, ge=0)
    labels: dict[str, str] = {}


class VariantIn(_Strict):
    name: str = Field(min_length=1)
    model: str | None = None
    endpoint: Endpoint | None = None
    prompt_template: str | None = None
    search_mode: SearchModeName | None = None


class ExperimentCreate(_Strict):
    base: RunCreate
    variants: list[VariantIn] = Field(min_length=2)


class ComparisonCreate(_Strict):
    run_ids: list[str] = Field(min_length=2)
    baseline_run_id: str = ""
    task_id: str = ""
    confidence: float | None = Field(None, ge=0.5, lt=1)
    resamples: int | None = Field(None, ge=100, le=100_000)
    include_differences: bool = False
