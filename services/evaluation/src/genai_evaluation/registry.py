"""The task registry: built-in tasks (YAML files shipped in ``genai_evaluation/tasks``) and tasks registered
at run time (validated YAML kept in the store). Documents are loaded once per task definition and cached.

    >>> # registry = TaskRegistry(store, data_dir); registry.get("gsm8k").output_type
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from genai_core.errors import AlreadyExists, InvalidArgument, NotFound

from genai_evaluation import datasets
from genai_evaluation.store import SqlStore
from genai_evaluation.taskspec import TaskSpec, parse_task
from genai_evaluation.types import OutputType

BUILTIN_DIR = Path(__file__).with_name("tasks")


def builtin_tasks(directory: Path = BUILTIN_DIR) -> dict[str, TaskSpec]:
    out = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = parse_task(path.read_text(encoding="utf-8"), builtin=True)
        out[spec.id] = spec
    return out


class TaskRegistry:
    def __init__(self, store: SqlStore, data_dir: Path, builtin: dict[str, TaskSpec] | None = None) -> None:
        self._store = store
        self._data_dir = data_dir
        self._builtin = builtin_tasks() if builtin is None else builtin
        self._docs: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def origin(self, task_id: str) -> str:
        return "builtin" if task_id in self._builtin else "registered"

    def get(self, task_id: str) -> TaskSpec:
        if task_id in self._builtin:
            return self._builtin[task_id]
        text = self._store.get_task(task_id)
        if text is None:
            raise NotFound(f"no task named {task_id!r}; ListTasks shows the tasks", resource_type="task",
                           resource_name=task_id)
        return parse_task(text)

    def list(self) -> list[TaskSpec]:
        registered = [parse_task(text) for text in self._store.tasks().values()]
        return sorted([*self._builtin.values(), *registered], key=lambda t: t.id)

    def page(self, output_type: OutputType | None, token: str, size: int) -> tuple[list[TaskSpec], str]:
        """One page of tasks (of ``output_type``, or all) by id, and the next page's token."""
        if token and not (token.isascii() and token.isdigit()):
            raise InvalidArgument.for_field("page_token", "pass the next_page_token of a previous response")
        start, size = int(token or 0), size or 100
        found = [t for t in self.list() if output_type in (None, t.output_type)]
        return found[start: start + size], str(start + size) if start + size < len(found) else ""

    def register(self, text: str, replace: bool, now: float) -> TaskSpec:
        spec = parse_task(text)
        if spec.id in self._builtin:
            raise AlreadyExists(f"{spec.id!r} is a built-in task; choose another id", resource_type="task",
                                resource_name=spec.id)
        if not replace and self._store.get_task(spec.id) is not None:
            raise AlreadyExists(f"a task named {spec.id!r} is registered; set replace to overwrite it",
                                resource_type="task", resource_name=spec.id)
        docs = self.docs(spec)  # a task whose documents do not load is rejected now, not in a run
        if not docs:
            raise InvalidArgument.for_field("dataset_kwargs", "the dataset has no documents")
        self._store.put_task(spec.id, text, now)
        return spec

    def docs(self, spec: TaskSpec) -> list[dict[str, Any]]:
        key = hashlib.sha256(spec.yaml.encode()).hexdigest()
        with self._lock:
            if key not in self._docs:
                self._docs[key] = datasets.load(spec.dataset, self._data_dir)
            return self._docs[key]

    def fewshot_docs(self, spec: TaskSpec) -> list[dict[str, Any]] | None:
        return datasets.load(spec.fewshot_dataset, self._data_dir) if spec.fewshot_dataset else None

    def corpus(self, spec: TaskSpec) -> list[dict[str, Any]]:
        if spec.corpus is None:
            return []
        key = "corpus:" + hashlib.sha256(spec.yaml.encode()).hexdigest()
        with self._lock:
            if key not in self._docs:
                self._docs[key] = datasets.load(spec.corpus, self._data_dir)
            return self._docs[key]
