"""All tokenizers of the service by id: built-in ones and the ones trained and persisted here."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from genai_core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from transformers import AutoTokenizer

from genai_tokenizer.model import Limits, Source, Tokenizer, files_revision
from genai_tokenizer.settings import TokenizerSettings
from genai_tokenizer.sources import BUILTINS, META_FILE
from genai_tokenizer.training import TrainSpec, train

logger = logging.getLogger(__name__)

# The files a tokenizer directory may hold that make up the tokenizer (a model package's weights beside them are not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_TRAINED_MAX_LENGTH = 2048


@dataclass(frozen=True)
class TrainCorpus:
    """Exactly one of ``texts`` (inline) or ``paths`` (relative to the data directory)."""

    texts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trained:
    tokenizer: Tokenizer
    trained_chars: int
    seconds: float


class TokenizerRegistry:
    """Loads built-ins and persisted tokenizers at start; adds trained ones at run time."""

    def __init__(self, settings: TokenizerSettings) -> None:
        self._settings = settings
        self._limits = Limits(settings.max_batch_size, settings.max_input_chars)
        self._tokenizers: dict[str, Tokenizer] = {}
        self._directories: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self.trained_dir = settings.data_dir / "tokenizers"

    @property
    def default_id(self) -> str:
        return self._settings.default_tokenizer

    # -- start-up ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load every tokenizer and warm each with one encode; blocking, run it off the loop."""
        for name in self._settings.builtins:
            if name not in BUILTINS:
                raise ValueError(f"unknown built-in tokenizer {name!r}; known: {sorted(BUILTINS)}")
            source = BUILTINS[name]
            directory = source.locate(self._settings.cache_dir)
            self._add(self._open(name, directory, Source.BUILTIN, model=source.model), directory)
        self.trained_dir.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self.trained_dir.iterdir()):
            if directory.name.startswith(".") or not (directory / META_FILE).exists():
                continue
            try:
                self._add(self._open(directory.name, directory, Source.TRAINED), directory)
            except Exception:  # one bad folder must not keep the others from serving
                logger.exception("skipping unreadable trained tokenizer in %s", directory)
        if self.default_id not in self._tokenizers:
            raise ValueError(f"default tokenizer {self.default_id!r} is not among {sorted(self._tokenizers)}")
        for tokenizer in self._tokenizers.values():
            tokenizer.encode(["warm-up"])
        self._loaded = True
        logger.info("loaded tokenizers: %s", ", ".join(sorted(self._tokenizers)))

    def _open(self, tokenizer_id: str, directory: Path, source: Source, model: str = "") -> Tokenizer:
        meta_path = directory / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        hf = AutoTokenizer.from_pretrained(str(directory))
        created = meta.get("create_time")
        return Tokenizer(
            tokenizer_id,
            hf,
            source=source,
            max_length=int(meta.get("max_length") or min(hf.model_max_length, 1 << 31)),
            revision=files_revision(directory),
            limits=self._limits,
            model=model or meta.get("model", ""),
            create_time=datetime.fromisoformat(created) if created else None,
        )

    def _add(self, tokenizer: Tokenizer, directory: Path) -> None:
        with self._lock:
            self._tokenizers[tokenizer.id] = tokenizer
            self._directories[tokenizer.id] = directory

    # -- lookup -----------------------------------------------------------------------------

    def get(self, tokenizer_id: str = "") -> Tokenizer:
        if not self._loaded:
            raise Unavailable("the tokenizer service is still loading its tokenizers; retry shortly")
        name = tokenizer_id or self.default_id
        found = self._tokenizers.get(name)
        if found is None:
            raise NotFound(
                f"tokenizer '{name}' does not exist; known tokenizers: {', '.join(sorted(self._tokenizers))}",
                resource_type="tokenizer",
                resource_name=name,
            )
        return found

    def files(self, tokenizer_id: str = "") -> tuple[Tokenizer, list[tuple[str, bytes]]]:
        """The tokenizer and the files it is made of, as (name, bytes); blocking (reads files)."""
        tokenizer = self.get(tokenizer_id)
        with self._lock:
            directory = self._directories[tokenizer.id]
        return tokenizer, [(name, (directory / name).read_bytes()) for name in TOKENIZER_FILES
                           if (directory / name).is_file()]

    def list(self) -> list[Tokenizer]:
        if not self._loaded:
            raise Unavailable("the tokenizer service is still loading its tokenizers; retry shortly")
        return [self._tokenizers[k] for k in sorted(self._tokenizers)]

    # -- training ---------------------------------------------------------------------------

    def _corpus_paths(self, paths: tuple[str, ...]) -> list[Path]:
        root = self._settings.data_dir.resolve()
        resolved: list[Path] = []
        for i, raw in enumerate(paths):
            path = (root / raw).resolve()
            if not path.is_relative_to(root):
                raise InvalidArgument.for_field(
                    f"files.paths[{i}]", f"'{raw}' is outside the data directory; use a path relative to it"
                )
            if not path.is_file():
                raise InvalidArgument.for_field(
                    f"files.paths[{i}]", f"'{raw}' is not a file under the service's data directory"
                )
            resolved.append(path)
        return resolved

    def train(
        self,
        tokenizer_id: str,
        spec: TrainSpec,
        corpus: TrainCorpus,
        *,
        max_length: int | None = None,
        overwrite: bool = False,
    ) -> Trained:
        """Train, persist atomically under the data directory, then register; blocking."""
        if not ID_PATTERN.match(tokenizer_id):
            raise InvalidArgument.for_field(
                "tokenizer_id", "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if tokenizer_id in self._settings.builtins or tokenizer_id in BUILTINS:
            raise AlreadyExists(
                f"'{tokenizer_id}' is a built-in tokenizer and cannot be replaced; choose another id",
                resource_type="tokenizer", resource_name=tokenizer_id,
            )
        if tokenizer_id in self._tokenizers and not overwrite:
            raise AlreadyExists(
                f"tokenizer '{tokenizer_id}' exists; set overwrite to replace it",
                resource_type="tokenizer", resource_name=tokenizer_id,
            )
        if bool(corpus.texts) == bool(corpus.paths):
            raise InvalidArgument.for_field("corpus", "send either inline texts or file paths, not both or neither")
        limit = self._settings.max_training_chars
        files = self._corpus_paths(corpus.paths) if corpus.paths else []

        def stream() -> Iterator[str]:
            from genai_tokenizer.training import read_files

            seen = 0
            for text in corpus.texts or read_files(files):
                seen += len(text)
                if seen > limit:
                    raise InvalidArgument.for_field("corpus", f"the corpus exceeds {limit} characters")
                yield text

        result = train(spec, stream, max_length=max_length or DEFAULT_TRAINED_MAX_LENGTH)
        target = self.trained_dir / tokenizer_id
        tmp = self.trained_dir / f".{tokenizer_id}.{uuid.uuid4().hex}"
        try:
            result.tokenizer.save_pretrained(str(tmp))
            meta = {
                "kind": spec.kind.value,
                "max_length": result.tokenizer.model_max_length,
                "create_time": datetime.now(UTC).isoformat(),
                "trained_chars": result.trained_chars,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
            # Load from the temporary folder first: a tokenizer that cannot load never replaces one that can.
            tokenizer = self._open(tokenizer_id, tmp, Source.TRAINED)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with self._lock:
            if tokenizer_id in self._tokenizers and not overwrite:  # a concurrent train won the race
                shutil.rmtree(tmp, ignore_errors=True)
                raise AlreadyExists(
                    f"tokenizer '{tokenizer_id}' exists; set overwrite to replace it",
                    resource_type="tokenizer", resource_name=tokenizer_id,
                )
            old = None
            if target.exists():
                old = target.with_name(f".{tokenizer_id}.old.{uuid.uuid4().hex}")
                os.replace(target, old)
            os.replace(tmp, target)
            self._tokenizers[tokenizer_id] = tokenizer
            self._directories[tokenizer_id] = target
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("trained tokenizer %s (%s, vocab %d)", tokenizer_id, spec.kind.value, tokenizer.vocab_size)
        return Trained(tokenizer, result.trained_chars, result.seconds)
