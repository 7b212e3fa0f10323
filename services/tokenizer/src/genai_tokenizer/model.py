"""One loaded tokenizer and the operations on it. No grpc here: plain Python values in and out."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from genai_core.errors import FailedPrecondition, InvalidArgument
from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase


class Kind(enum.Enum):
    BPE = "bpe"
    WORDPIECE = "wordpiece"
    UNIGRAM = "unigram"


class Source(enum.Enum):
    BUILTIN = "builtin"
    TRAINED = "trained"
    CONFIGURED = "configured"


@dataclass(frozen=True)
class SpecialToken:
    role: str
    content: str
    id: int


@dataclass(frozen=True)
class TokenizerInfo:
    id: str
    kind: Kind | None
    source: Source
    vocab_size: int
    max_length: int
    special_tokens: tuple[SpecialToken, ...]
    has_chat_template: bool
    revision: str
    model: str = ""
    create_time: datetime | None = None
    max_batch_size: int = 0
    max_input_chars: int = 0


@dataclass(frozen=True)
class EncodingResult:
    ids: list[int]
    special_flags: list[bool]
    tokens: list[str] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    max_batch_size: int
    max_input_chars: int


def files_revision(directory: Path) -> str:
    """sha256 over the names and bytes of the tokenizer files, so any change shows."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _kind_of(hf: PreTrainedTokenizerBase) -> Kind | None:
    name = type(hf.backend_tokenizer.model).__name__.lower()
    return {"bpe": Kind.BPE, "wordpiece": Kind.WORDPIECE, "unigram": Kind.UNIGRAM}.get(name)


class Tokenizer:
    """A fast (Rust) tokenizer with its metadata; thread-safe for concurrent reads."""

    def __init__(
        self,
        tokenizer_id: str,
        hf: PreTrainedTokenizerBase,
        *,
        source: Source,
        max_length: int,
        revision: str,
        limits: Limits,
        model: str = "",
        create_time: datetime | None = None,
    ) -> None:
        if not getattr(hf, "is_fast", False):
            raise ValueError(f"{tokenizer_id}: only fast (tokenizers-backed) tokenizers are supported")
        self.id = tokenizer_id
        self.hf = hf
        self._backend = hf.backend_tokenizer
        # tokenizer.json may pin padding and truncation (MiniLM: Fixed 128); ids and counts must be exact.
        self._backend.no_padding()
        self._backend.no_truncation()
        self.vocab_size = len(hf)
        self._special_ids = frozenset(hf.all_special_ids) | frozenset(
            i for i, t in hf.added_tokens_decoder.items() if t.special
        )
        self.limits = limits
        self.info = TokenizerInfo(
            id=tokenizer_id,
            kind=_kind_of(hf),
            source=source,
            vocab_size=self.vocab_size,
            max_length=max_length,
            special_tokens=self._specials(),
            has_chat_template=bool(getattr(hf, "chat_template", None)),
            revision=revision,
            model=model,
            create_time=create_time,
            max_batch_size=limits.max_batch_size,
            max_input_chars=limits.max_input_chars,
        )

    def _specials(self) -> tuple[SpecialToken, ...]:
        found: list[SpecialToken] = []
        seen: set[str] = set()
        for key, value in self.hf.special_tokens_map.items():
            role = key.removesuffix("_tokens").removesuffix("_token")
            for content in value if isinstance(value, list) else [value]:
                found.append(SpecialToken(role, content, self.hf.convert_tokens_to_ids(content)))
                seen.add(content)
        for token_id, added in sorted(self.hf.added_tokens_decoder.items()):
            if added.special and added.content not in seen:
                found.append(SpecialToken("additional", added.content, token_id))
        return tuple(found)

    # -- validation -------------------------------------------------------------------------

    def _check_texts(self, texts: list[str], name: str = "texts") -> None:
        if not texts:
            raise InvalidArgument.for_field(name, "send at least one text")
        if len(texts) > self.limits.max_batch_size:
            raise InvalidArgument.for_field(
                name, f"{len(texts)} texts exceed the batch limit of {self.limits.max_batch_size}; split the batch"
            )
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_input_chars:
                raise InvalidArgument.for_field(
                    f"{name}[{i}]",
                    f"{len(text)} characters exceed the limit of {self.limits.max_input_chars}",
                )

    # -- operations -------------------------------------------------------------------------

    def encode(
        self,
        texts: list[str],
        *,
        add_special_tokens: bool = True,
        return_tokens: bool = False,
        return_offsets: bool = False,
    ) -> list[EncodingResult]:
        self._check_texts(texts)
        encodings = self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [
            EncodingResult(
                ids=list(e.ids),
                special_flags=[i in self._special_ids for i in e.ids],
                tokens=list(e.tokens) if return_tokens else [],
                offsets=list(e.offsets) if return_offsets else [],
            )
            for e in encodings
        ]

    def count(self, texts: list[str], *, add_special_tokens: bool = True, field: str = "texts") -> list[int]:
        self._check_texts(texts, field)
        return [len(e.ids) for e in self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def decode(self, sequences: list[list[int]], *, skip_special_tokens: bool = False) -> list[str]:
        if not sequences:
            raise InvalidArgument.for_field("sequences", "send at least one sequence of token ids")
        if len(sequences) > self.limits.max_batch_size:
            raise InvalidArgument.for_field(
                "sequences", f"{len(sequences)} sequences exceed the batch limit of {self.limits.max_batch_size}"
            )
        for i, ids in enumerate(sequences):
            for j, token_id in enumerate(ids):
                if token_id >= self.vocab_size:
                    raise InvalidArgument.for_field(
                        f"sequences[{i}].ids[{j}]",
                        f"token id {token_id} is out of range for tokenizer '{self.id}' "
                        f"(vocabulary size {self.vocab_size})",
                    )
        return self._backend.decode_batch(sequences, skip_special_tokens=skip_special_tokens)

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
        chat_template: str | None = None,
    ) -> tuple[str, list[int]]:
        """Render with the tokenizer's (or the given) Jinja template in transformers' sandbox."""
        if not messages:
            raise InvalidArgument.for_field("messages", "send at least one message")
        for i, message in enumerate(messages):
            if not message.get("role"):
                raise InvalidArgument.for_field(f"messages[{i}].role", "set a role such as 'user'")
        if chat_template is None and not self.info.has_chat_template:
            raise FailedPrecondition(
                f"tokenizer '{self.id}' has no chat template; pass chat_template or use a chat model's tokenizer",
                reason="NO_CHAT_TEMPLATE",
            )
        try:
            text = self.hf.apply_chat_template(
                messages,
                tools=tools or None,
                add_generation_prompt=add_generation_prompt,
                chat_template=chat_template,
                tokenize=False,
            )
        except TemplateError as exc:
            raise InvalidArgument.for_field("chat_template", f"the template failed to render: {exc}") from exc
        if len(text) > self.limits.max_input_chars:
            raise InvalidArgument.for_field(
                "messages", f"the rendered prompt has {len(text)} characters, over {self.limits.max_input_chars}"
            )
        # The template already placed BOS/role markers; adding specials again would double them.
        ids = self._backend.encode(text, add_special_tokens=False).ids
        return text, list(ids)
