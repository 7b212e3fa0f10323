"""One of our tasks as an lm-evaluation-harness task: the same documents (a local JSON Lines file) and the
same prompt fields, so lm-eval driving our gateway and this service score the same requests. The
benchmark and the end-to-end test use it for the cross-check (identical accuracy on log-likelihood tasks).

    >>> # name, include_path = export(spec, docs, Path("/tmp/lmeval"))
    >>> # lm_eval --model local-completions --tasks {name} --include_path {include_path} ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from genai_core.errors import InvalidArgument

from genai_evaluation.taskspec import TaskSpec
from genai_evaluation.types import OutputType

SUPPORTED = {OutputType.MULTIPLE_CHOICE, OutputType.LOGLIKELIHOOD, OutputType.GENERATE_UNTIL}


def export(spec: TaskSpec, docs: Sequence[dict[str, Any]], out_dir: Path) -> tuple[str, Path]:
    """Write ``<out_dir>/<task>.yaml`` and all its documents (the few-shot pool too); return (lm-eval task
    name, include path). Evaluate the first N with lm-eval's ``--limit N``, as a run's ``limit`` does."""
    if spec.output_type not in SUPPORTED or spec.execution is not None:
        raise InvalidArgument.for_field("task", f"{spec.id} cannot be exported to lm-eval ({spec.output_type.value})")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"genai_{spec.id}"
    data = out_dir / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
    task: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": spec.output_type.value,
        "doc_to_text": spec.doc_to_text,
        "doc_to_target": spec.doc_to_target,
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "num_fewshot": spec.num_fewshot,
        "fewshot_config": {"sampler": spec.fewshot_sampler},
        "metric_list": [{"metric": m.name, "aggregation": "mean", "higher_is_better": True, **m.options}
                        for m in spec.metrics],
    }
    if spec.description:
        task["description"] = spec.description
    if spec.output_type == OutputType.MULTIPLE_CHOICE:
        task["doc_to_choice"] = list(spec.doc_to_choice) if isinstance(spec.doc_to_choice, tuple) else spec.doc_to_choice
    if spec.generation:
        task["generation_kwargs"] = {k: v for k, v in spec.generation.items() if k != "temperature"} | {"do_sample": False}
    if spec.filters:
        task["filter_list"] = [{"name": f.name, "filter": [{"function": fn, **opts} for fn, opts in f.steps]}
                               for f in spec.filters]
    (out_dir / f"{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return name, out_dir
