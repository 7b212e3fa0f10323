"""Records to token ids, with the loss where it belongs: the assistant replies of a chat (as the model's
chat template renders them, ``<|im_end|>`` included, so the model learns to stop), the completion of a
prompt, all of a text. The same code counts tokens at upload, checks lengths when a job is created and
builds the training set in the worker, so the three always agree.

    >>> # ids, labels = encode_chat(tokenizer, [{"role": "user", "content": "Hi"},
    >>> #                                       {"role": "assistant", "content": "Hello!"}])
    >>> # labels are -100 except on the tokens of "Hello!<|im_end|>\\n"
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genai_finetune.records import Record
from genai_finetune.types import DatasetFormat

IGNORE = -100  # the label of a token outside the loss


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    def truncated(self, length: int) -> Encoded:
        return Encoded(self.input_ids[:length], self.labels[:length])

    @property
    def trainable(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class Tokenizers:
    """One tokenizer per model directory, loaded on first use."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def get(self, directory: Path) -> Any:
        with self._lock:
            if directory not in self._loaded:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(directory))
                if tokenizer.pad_token_id is None:
                    tokenizer.pad_token = tokenizer.eos_token
                self._loaded[directory] = tokenizer
            return self._loaded[directory]


def _template(tokenizer, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, prompt: bool) -> str:
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    return tokenizer.apply_chat_template(clean, tools=tools or None, add_generation_prompt=prompt, tokenize=False)


def encode_chat(tokenizer, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Encoded:
    """The rendered conversation; labels on the assistant messages whose weight is not 0.

    Each assistant reply's span is the text between the conversation up to it rendered with a generation
    prompt and the conversation including it; tokens starting inside a span are trained on.
    """
    tools = tools or []
    full = _template(tokenizer, messages, tools, prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("weight", 1):
            continue
        start = len(_template(tokenizer, messages[:i], tools, prompt=True))
        end = len(_template(tokenizer, messages[: i + 1], tools, prompt=False))
        spans.append((start, end))
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(a <= begin < b for a, b in spans) else IGNORE
        for token, (begin, _) in zip(encoded.input_ids, encoded.offset_mapping, strict=True)
    ]
    return Encoded(list(encoded.input_ids), labels)


def encode_completion(tokenizer, prompt: str, completion: str) -> Encoded:
    prompt_ids = tokenizer(prompt).input_ids if prompt else []
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return Encoded(prompt_ids + completion_ids, [IGNORE] * len(prompt_ids) + completion_ids)


def encode_text(tokenizer, text: str) -> Encoded:
    ids = tokenizer(text).input_ids + [tokenizer.eos_token_id]
    return Encoded(ids, list(ids))


def preference_texts(tokenizer, record: Record) -> tuple[str, str, str]:
    """The prompt as the chat template renders it (with the generation prompt), and the two replies as the
    template ends an assistant turn."""
    prompt = _template(tokenizer, record["messages"], [], prompt=True)
    reply = [{"role": "assistant", "content": "\x00"}]
    rendered = _template(tokenizer, record["messages"] + reply, [], prompt=False)
    suffix = rendered[rendered.index("\x00") + 1:] if "\x00" in rendered else ""
    return prompt, record["chosen"] + suffix, record["rejected"] + suffix


def encode_preference(tokenizer, record: Record) -> Encoded:
    """Prompt plus the longer reply: what one preference pair costs in sequence length."""
    prompt, chosen, rejected = preference_texts(tokenizer, record)
    reply = max(chosen, rejected, key=len)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    reply_ids = tokenizer(reply, add_special_tokens=False).input_ids
    return Encoded(prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids)


ENCODERS: dict[DatasetFormat, Callable[[Any, Record], Encoded]] = {
    DatasetFormat.CHAT: lambda tok, r: encode_chat(tok, r["messages"], r["tools"]),
    DatasetFormat.COMPLETION: lambda tok, r: encode_completion(tok, r["prompt"], r["completion"]),
    DatasetFormat.PREFERENCE: encode_preference,
    DatasetFormat.TEXT: lambda tok, r: encode_text(tok, r["text"]),
    # Counted for the upload's token count only (rerankers and image models bring their own tokenizer or none).
    DatasetFormat.PAIRS: lambda tok, r: encode_text(tok, f"{r['query']}\n{r['document']}"),
    DatasetFormat.IMAGE: lambda tok, r: Encoded([], []),
}


def encode(tokenizer, fmt: DatasetFormat, record: Record) -> Encoded:
    return ENCODERS[fmt](tokenizer, record)


def token_counts(tokenizer, fmt: DatasetFormat, records: list[Record]) -> list[int]:
    return [len(encode(tokenizer, fmt, r)) for r in records]
