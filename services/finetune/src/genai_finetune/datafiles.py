"""Datasets: uploaded training files, validated line by line and stored content-addressed.

A file is stored once under ``files/<sha256[:2]>/<sha256>`` however many datasets (uploads) name it; the
database holds the datasets. Token counts use the default base model's tokenizer and chat template.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

from genai_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

from genai_finetune.basemodels import BaseModels
from genai_finetune.records import Record, parse
from genai_finetune.store import Store
from genai_finetune.tokenization import Tokenizers, token_counts
from genai_finetune.types import Dataset, DatasetFormat, Page

PURPOSES = ("fine-tune", "fine-tune-results")


class Datasets:
    def __init__(self, store: Store, root: Path, imports_dir: Path, base_models: BaseModels, tokenizers: Tokenizers,
                 *, max_bytes: int, max_records: int) -> None:
        self._store = store
        self._root = root
        self._imports = imports_dir
        self._base_models = base_models
        self._tokenizers = tokenizers
        self.max_bytes = max_bytes
        self.max_records = max_records

    def _blob(self, sha256: str) -> Path:
        return self._root / sha256[:2] / sha256

    def _read_import(self, file_path: str) -> bytes:
        root = self._imports.resolve()
        location = (root / file_path).resolve()
        if not location.is_relative_to(root):
            raise InvalidArgument.for_field("file_path", f"'{file_path}' is outside the import directory {root}")
        if not location.is_file():
            raise InvalidArgument.for_field("file_path", f"'{file_path}' is not a file under {root}")
        if location.stat().st_size > self.max_bytes:
            raise self._too_large(location.stat().st_size)
        return location.read_bytes()

    def _too_large(self, size: int) -> InvalidArgument:
        return InvalidArgument(f"the file has {size} bytes; the limit is {self.max_bytes} "
                               "(GENAI_FINETUNE_MAX_DATASET_BYTES)",
                               [FieldViolation("file", f"at most {self.max_bytes} bytes")], reason="DATASET_TOO_LARGE")

    def create(self, *, filename: str, purpose: str, content: bytes | None = None, file_path: str = "",
               declared: DatasetFormat | None = None) -> Dataset:
        """Validate every record (raising InvalidArgument that names the bad lines) and store the file."""
        purpose = purpose or "fine-tune"
        if purpose not in PURPOSES:
            raise InvalidArgument.for_field("purpose", f"use one of {', '.join(PURPOSES)}, not {purpose!r}")
        if content is None:
            content = self._read_import(file_path)
            filename = filename or Path(file_path).name
        if len(content) > self.max_bytes:
            raise self._too_large(len(content))
        filename = filename or "dataset.jsonl"
        fmt, records = parse(content, filename, declared, self.max_records)
        base = self._base_models.get(self._base_models.default_id)
        tokens = sum(token_counts(self._tokenizers.get(base.directory), fmt, records))
        sha256 = hashlib.sha256(content).hexdigest()
        blob = self._blob(sha256)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(f".{blob.name}.{uuid.uuid4().hex}")
            tmp.write_bytes(content)
            os.replace(tmp, blob)
        dataset = Dataset(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, fmt, len(records), len(content), sha256,
                          tokens, time.time())
        self._store.add_dataset(dataset)
        return dataset

    def get(self, dataset_id: str, field: str = "dataset_id") -> Dataset:
        dataset = self._store.get_dataset(dataset_id) if dataset_id else None
        if dataset is None:
            problem = f"no dataset '{dataset_id}' (was it deleted?); upload the file first"
            raise NotFound(f"{field}: {problem}", [FieldViolation(field, problem)], resource_type="dataset",
                           resource_name=dataset_id)
        return dataset

    def list(self, after: str, limit: int, purpose: str = "") -> Page:
        return self._store.list_datasets(after, limit, purpose)

    def content(self, dataset_id: str) -> bytes:
        return self._blob(self.get(dataset_id).sha256).read_bytes()

    def path(self, dataset: Dataset) -> Path:
        return self._blob(dataset.sha256)

    def records(self, dataset: Dataset) -> list[Record]:
        _, records = parse(self._blob(dataset.sha256).read_bytes(), dataset.filename, dataset.format)
        return records

    def delete(self, dataset_id: str) -> Dataset:
        dataset, users, shared = self._store.delete_dataset(dataset_id)
        if dataset is None:
            raise NotFound(f"no dataset '{dataset_id}'", resource_type="dataset", resource_name=dataset_id)
        if users:
            raise FailedPrecondition(f"dataset '{dataset_id}' is used by unfinished job(s) {', '.join(users)}; "
                                     "cancel them or wait until they finish", reason="DATASET_IN_USE",
                                     resource_type="dataset", resource_name=dataset_id)
        if not shared:
            self._blob(dataset.sha256).unlink(missing_ok=True)
        return dataset
