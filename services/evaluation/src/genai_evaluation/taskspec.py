"""Task definitions as data: YAML in lm-evaluation-harness's vocabulary, validated into a frozen ``TaskSpec``.

    >>> spec = parse_task('''
    ... task: tiny
    ... output_type: multiple_choice
    ... dataset_path: inline
    ... dataset_kwargs: {docs: [{q: "2+2?", choices: ["3", "4"], label: 1}]}
    ... doc_to_text: "Q: {{q}}\\nA:"
    ... doc_to_choice: choices
    ... doc_to_target: label
    ... metric_list: [{metric: acc}]
    ... ''')
    >>> spec.id, spec.output_type.value, spec.metrics[0].name
    ('tiny', 'multiple_choice', 'acc')

Every problem is an ``InvalidArgument`` naming the YAML field (``metric_list[0].metric: unknown metric``),
so a user who registers a task learns what to fix. The keys lm-eval users know keep their meaning:
``doc_to_text``/``doc_to_target``/``doc_to_choice`` are a document field or a Jinja template,
``target_delimiter``/``fewshot_delimiter``/``description`` shape the prompt, ``filter_list`` is a pipeline
of named filters, ``metric_list`` names registered metrics with their options. Service additions:
``execution`` (run generated code in the sandbox), ``corpus`` and ``retrieval`` (retrieval and RAG tasks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from genai_core.errors import InvalidArgument

from genai_evaluation import datasets, filters, metrics, templates
from genai_evaluation.datasets import DatasetSpec
from genai_evaluation.types import OutputType, SearchMode

TASK_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KNOWN_KEYS = {
    "task", "tag", "group", "description", "dataset_path", "dataset_name", "dataset_kwargs", "test_split",
    "fewshot_split", "process_docs", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice",
    "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_config", "generation_kwargs", "repeats",
    "filter_list", "metric_list", "metadata", "execution", "corpus", "retrieval", "rolling",
}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterSpec:
    name: str
    steps: tuple[tuple[str, Mapping[str, Any]], ...]


@dataclass(frozen=True)
class ExecutionSpec:
    """Score generated code by running ``program`` (a template over the doc and ``response``) in the sandbox."""

    program: str
    timeout_s: float = 10.0
    memory_mb: int = 512


@dataclass(frozen=True)
class RetrievalSpec:
    mode: SearchMode = SearchMode.DENSE
    top_k: int = 10
    query_field: str = "query"
    relevant_field: str = "relevant"


@dataclass(frozen=True)
class TaskSpec:
    id: str
    output_type: OutputType
    dataset: DatasetSpec
    doc_to_text: str = ""
    doc_to_target: str | int = ""
    doc_to_choice: str | tuple[str, ...] | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_sampler: str = "first_n"
    fewshot_dataset: DatasetSpec | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)
    repeats: int = 1
    filters: tuple[FilterSpec, ...] = ()
    metrics: tuple[MetricSpec, ...] = ()
    version: str = "1.0"
    summary: str = ""
    group: str = ""
    execution: ExecutionSpec | None = None
    corpus: DatasetSpec | None = None
    retrieval: RetrievalSpec = RetrievalSpec()
    rolling_prefix: bool = True  # loglikelihood_rolling: score the first token after the prefix token
    rolling_max_tokens: int | None = None  # loglikelihood_rolling: score only a text's first N tokens
    yaml: str = ""

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.filters)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(name for m in self.metrics for name in metrics.output_names(m.name, m.options))

    @property
    def score_names(self) -> tuple[str, ...]:
        """Every score the task reports: each metric's output names; exact_match once per filter."""
        out: list[str] = []
        for m in self.metrics:
            per_filter = self.filter_names if m.name == "exact_match" and self.filter_names else ("",)
            out += [metrics.score_name(name, f) for name in metrics.output_names(m.name, m.options) for f in per_filter]
        return tuple(out)

    @property
    def dataset_label(self) -> str:
        path = self.dataset.options.get("data_file") or self.dataset.options.get("data_files") or ""
        return f"{self.dataset.source}:{path}" if path else self.dataset.source


def _bad(path: str, what: str) -> InvalidArgument:
    return InvalidArgument.for_field(path, what)


def _expect(data: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
    value = data.get(key, default)
    if value is not None and not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise _bad(key, f"must be a {names}, got {type(value).__name__}")
    return value


def _template(key: str, value: Any) -> Any:
    if isinstance(value, str):
        templates.check(value, key)
    return value


def _dataset(data: Mapping[str, Any], path_key: str, kwargs_key: str, where: str) -> DatasetSpec:
    source = data.get(path_key)
    if not isinstance(source, str) or not source:
        raise _bad(f"{where}{path_key}", f"name a data source: one of {', '.join(sorted(datasets.SOURCES))}")
    if source not in datasets.SOURCES:
        raise _bad(f"{where}{path_key}", f"unknown data source {source!r}; known: {', '.join(sorted(datasets.SOURCES))}")
    options = data.get(kwargs_key) or {}
    if not isinstance(options, dict):
        raise _bad(f"{where}{kwargs_key}", "must be a mapping")
    processor = data.get("process_docs") or ""
    if processor and processor not in datasets.PROCESSORS:
        raise _bad(f"{where}process_docs", f"unknown processor {processor!r}; known: {', '.join(sorted(datasets.PROCESSORS))}")
    datasets.SOURCES[source].check(options, f"{where}{kwargs_key}")
    return DatasetSpec(source, options, processor)


def _filters(raw: Any) -> tuple[FilterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad("filter_list", "must be a list of {name, filter: [{function, ...}]}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad(f"filter_list[{i}].name", "each filter needs a name")
        steps = item.get("filter")
        if not isinstance(steps, list) or not steps:
            raise _bad(f"filter_list[{i}].filter", "must be a non-empty list of {function: ...}")
        parsed = []
        for j, step in enumerate(steps):
            where = f"filter_list[{i}].filter[{j}]"
            if not isinstance(step, dict) or "function" not in step:
                raise _bad(f"{where}.function", "each step names a function")
            options = {k: v for k, v in step.items() if k != "function"}
            filters.check(step["function"], options, where)
            parsed.append((step["function"], options))
        out.append(FilterSpec(item["name"], tuple(parsed)))
    if len({f.name for f in out}) != len(out):
        raise _bad("filter_list", "filter names must be unique")
    return tuple(out)


def _metrics(raw: Any, output_type: OutputType) -> tuple[MetricSpec, ...]:
    if raw is None:
        raw = [{"metric": name} for name in metrics.DEFAULTS[output_type]]
    if not isinstance(raw, list) or not raw:
        raise _bad("metric_list", "must be a non-empty list of {metric: name, ...}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            raise _bad(f"metric_list[{i}].metric", "each entry names a metric")
        options = {k: v for k, v in item.items() if k not in ("metric", "aggregation", "higher_is_better")}
        metrics.check(item["metric"], options, output_type, f"metric_list[{i}]")
        out.append(MetricSpec(item["metric"], options))
    return tuple(out)


def _execution(raw: Any) -> ExecutionSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("program"), str):
        raise _bad("execution.program", "a template of the program to run, such as '{{prompt}}{{response}}\\n{{test}}'")
    _template("execution.program", raw["program"])
    timeout, memory = raw.get("timeout_s", 10.0), raw.get("memory_mb", 512)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 120:
        raise _bad("execution.timeout_s", "must be a number of seconds in (0, 120]")
    if not isinstance(memory, int) or not 64 <= memory <= 8192:
        raise _bad("execution.memory_mb", "must be an integer in [64, 8192]")
    return ExecutionSpec(raw["program"], float(timeout), memory)


def _retrieval(raw: Any) -> RetrievalSpec:
    if raw is None:
        return RetrievalSpec()
    if not isinstance(raw, dict):
        raise _bad("retrieval", "must be a mapping of mode, top_k, query_field, relevant_field")
    mode = raw.get("mode", "dense")
    if mode not in {m.value for m in SearchMode}:
        raise _bad("retrieval.mode", f"must be one of {[m.value for m in SearchMode]}")
    top_k = raw.get("top_k", 10)
    if not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise _bad("retrieval.top_k", "must be an integer in [1, 100]")
    return RetrievalSpec(SearchMode(mode), top_k, str(raw.get("query_field", "query")),
                         str(raw.get("relevant_field", "relevant")))


def parse_task(text: str, *, builtin: bool = False) -> TaskSpec:
    """Validate a task definition; ``builtin`` tasks may use the sources that read installed packages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _bad("yaml", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise _bad("yaml", "a task definition is a mapping of keys such as task, output_type, doc_to_text")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise _bad(unknown[0], f"unknown key; known keys: {', '.join(sorted(KNOWN_KEYS))}")
    task_id = data.get("task")
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise _bad("task", "the task id: 1-64 of lowercase letters, digits, '_', '.', '-'")
    raw_type = data.get("output_type")
    if raw_type not in {t.value for t in OutputType}:
        raise _bad("output_type", f"must be one of {[t.value for t in OutputType]}")
    output_type = OutputType(raw_type)
    dataset = _dataset(data, "dataset_path", "dataset_kwargs", "")
    if not builtin and dataset.source not in {"inline", "json"}:
        raise _bad("dataset_path", "a registered task reads 'inline' docs or a 'json' file under the data directory")
    corpus = None
    if "corpus" in data:
        raw_corpus = data["corpus"]
        if not isinstance(raw_corpus, dict):
            raise _bad("corpus", "must be a mapping with dataset_path and dataset_kwargs")
        corpus = _dataset(raw_corpus, "dataset_path", "dataset_kwargs", "corpus.")
    if output_type in (OutputType.RETRIEVAL, OutputType.RAG) and corpus is None:
        raise _bad("corpus", f"a {output_type.value} task needs a corpus to search")

    doc_to_text = _template("doc_to_text", _expect(data, "doc_to_text", str, ""))
    if output_type not in (OutputType.RETRIEVAL, OutputType.LOGLIKELIHOOD_ROLLING) and not doc_to_text:
        raise _bad("doc_to_text", "a field name or template that renders the prompt of a document")
    doc_to_target = _template("doc_to_target", _expect(data, "doc_to_target", (str, int), ""))
    if output_type in (OutputType.LOGLIKELIHOOD_ROLLING, OutputType.LOGLIKELIHOOD) and doc_to_target == "":
        raise _bad("doc_to_target", f"a {output_type.value} task scores the text doc_to_target renders")
    doc_to_choice = data.get("doc_to_choice")
    if output_type == OutputType.MULTIPLE_CHOICE:
        if isinstance(doc_to_choice, list) and doc_to_choice and all(isinstance(c, str) for c in doc_to_choice):
            doc_to_choice = tuple(doc_to_choice)
        elif isinstance(doc_to_choice, str) and doc_to_choice:
            _template("doc_to_choice", doc_to_choice)
        else:
            raise _bad("doc_to_choice", "a multiple_choice task needs choices: a field, a template or a list")
        if doc_to_target == "":
            raise _bad("doc_to_target", "the index of the right choice, or its text (a field or template)")
    elif doc_to_choice is not None:
        raise _bad("doc_to_choice", f"only multiple_choice tasks have choices, not {output_type.value}")

    num_fewshot = _expect(data, "num_fewshot", int, 0)
    if not 0 <= num_fewshot <= 64:
        raise _bad("num_fewshot", "must be between 0 and 64")
    fewshot_config = _expect(data, "fewshot_config", dict, {}) or {}
    sampler = fewshot_config.get("sampler", "first_n")
    if sampler not in ("first_n", "random"):
        raise _bad("fewshot_config.sampler", "must be first_n or random")
    fewshot_dataset = None
    if "fewshot_split" in data and isinstance(data.get("fewshot_split"), dict):
        fewshot_dataset = _dataset(data["fewshot_split"], "dataset_path", "dataset_kwargs", "fewshot_split.")
    generation = _expect(data, "generation_kwargs", dict, {}) or {}
    until = generation.get("until", [])
    if isinstance(until, str):
        generation = {**generation, "until": [until]}
    elif not isinstance(until, list) or not all(isinstance(u, str) for u in until):
        raise _bad("generation_kwargs.until", "must be a string or a list of strings")
    max_gen = generation.get("max_gen_toks", 256)
    if not isinstance(max_gen, int) or not 1 <= max_gen <= 4096:
        raise _bad("generation_kwargs.max_gen_toks", "must be an integer in [1, 4096]")
    repeats = _expect(data, "repeats", int, 1)
    if not 1 <= repeats <= 100:
        raise _bad("repeats", "must be between 1 and 100")
    metadata = _expect(data, "metadata", dict, {}) or {}
    rolling = _expect(data, "rolling", dict, {}) or {}
    max_tokens = rolling.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 2):
        raise _bad("rolling.max_tokens", "an integer >= 2: score only each text's first N tokens")
    spec = TaskSpec(
        id=task_id,
        output_type=output_type,
        dataset=dataset,
        doc_to_text=doc_to_text,
        doc_to_target=doc_to_target,
        doc_to_choice=doc_to_choice,
        description=_template("description", _expect(data, "description", str, "")),
        target_delimiter=_expect(data, "target_delimiter", str, " "),
        fewshot_delimiter=_expect(data, "fewshot_delimiter", str, "\n\n"),
        num_fewshot=num_fewshot,
        fewshot_sampler=sampler,
        fewshot_dataset=fewshot_dataset,
        generation=generation,
        repeats=repeats,
        filters=_filters(data.get("filter_list")),
        metrics=_metrics(data.get("metric_list"), output_type),
        version=str(metadata.get("version", "1.0")),
        summary=str(metadata.get("summary", "")),
        group=str(data.get("group") or data.get("tag") or ""),
        execution=_execution(data.get("execution")),
        corpus=corpus,
        retrieval=_retrieval(data.get("retrieval")),
        rolling_prefix=bool(rolling.get("score_first_token", True)),
        rolling_max_tokens=max_tokens,
        yaml=text,
    )
    needs_execution = any(m.name == "pass_at_k" for m in spec.metrics)
    if needs_execution and spec.execution is None:
        raise _bad("execution", "pass_at_k runs the generated code: add execution.program")
    return spec
