"""Parse and validate training files line by line, in OpenAI's formats.

Each problem names the line (1-based) and the field, so a user can fix the file:

    >>> try:
    ...     parse(b'{"messages": [{"role": "bot", "content": "hi"}]}\\n', "train.jsonl")
    ... except InvalidArgument as exc:
    ...     print(exc.field_violations[0].field)
    line[1].messages[0].role

Records come back normalized (plain dicts), in the shape the tokenization and the recipes expect:
chat ``{"messages", "tools"}``, completion ``{"prompt", "completion"}``, preference
``{"messages", "chosen", "rejected"}`` (the prompt conversation and the two assistant replies), text ``{"text"}``;
each also has ``_line``, the line it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from genai_core.errors import FieldViolation, InvalidArgument

from genai_finetune.types import DatasetFormat

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_VIOLATIONS = 20  # report this many bad lines at once, then stop reading
_BLANK_LINES = re.compile(r"\n\s*\n")

Record = dict[str, Any]


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _Bad(field, f"must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise _Bad(field, "is empty; every message needs some text")
    return value


def _message(m: Any, field: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise _Bad(field, "must be an object with 'role' and 'content'")
    role = m.get("role")
    if role not in ROLES:
        raise _Bad(f"{field}.role", f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    out: dict[str, Any] = {"role": role}
    calls = m.get("tool_calls")
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list):
            raise _Bad(f"{field}.tool_calls", "only assistant messages carry tool_calls, as a list")
        out["tool_calls"] = calls
    content = m.get("content")
    if isinstance(content, list):  # OpenAI content parts: only text parts can train a text model
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(content):
            raise _Bad(f"{field}.content", "only text content parts ({'type': 'text', 'text': ...}) are supported")
        content = "".join(p for p in parts if isinstance(p, str))
    if calls is not None and not content:
        out["content"] = ""
    else:
        out["content"] = _text(content, f"{field}.content")
    if "weight" in m:
        if role != "assistant" or m["weight"] not in (0, 1):
            raise _Bad(f"{field}.weight", "weight is 0 or 1, and only on assistant messages")
        out["weight"] = int(m["weight"])
    for key in ("name", "tool_call_id"):
        if key in m:
            out[key] = _text(m[key], f"{field}.{key}")
    return out


def _conversation(messages: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _Bad(field, "must be a non-empty list of messages")
    out = [_message(m, f"{field}[{i}]") for i, m in enumerate(messages)]
    if out[0]["role"] == "assistant":
        raise _Bad(f"{field}[0].role", "a conversation starts with a system or user message")
    return out


def _chat(line: dict[str, Any]) -> Record:
    messages = _conversation(line.get("messages"), "messages")
    if not any(m["role"] == "assistant" and m.get("weight", 1) for m in messages):
        raise _Bad("messages", "no assistant message to learn; add one (with weight 1 if weights are given)")
    tools = line.get("tools", [])
    if not isinstance(tools, list):
        raise _Bad("tools", "must be a list of tool definitions")
    return {"messages": messages, "tools": tools}


def _completion(line: dict[str, Any]) -> Record:
    return {"prompt": _text(line.get("prompt"), "prompt", allow_empty=True),
            "completion": _text(line.get("completion"), "completion")}


def _reply(value: Any, field: str) -> str:
    if not isinstance(value, list) or len(value) != 1:
        raise _Bad(field, "must be a list with exactly one assistant message")
    message = _message(value[0], f"{field}[0]")
    if message["role"] != "assistant":
        raise _Bad(f"{field}[0].role", "the preferred and non-preferred outputs are assistant messages")
    return message["content"]


def _preference(line: dict[str, Any]) -> Record:
    source = line.get("input")
    if not isinstance(source, dict):
        raise _Bad("input", "must be an object with 'messages' (the conversation before the replies)")
    messages = _conversation(source.get("messages"), "input.messages")
    if messages[-1]["role"] == "assistant":
        raise _Bad("input.messages", "the prompt conversation ends with a user message; the replies come after")
    chosen = _reply(line.get("preferred_output"), "preferred_output")
    rejected = _reply(line.get("non_preferred_output"), "non_preferred_output")
    if chosen == rejected:
        raise _Bad("non_preferred_output", "is the same as preferred_output; a preference needs two different replies")
    return {"messages": messages, "chosen": chosen, "rejected": rejected}


def _text_record(line: dict[str, Any]) -> Record:
    return {"text": _text(line.get("text"), "text")}


def _pairs(line: dict[str, Any]) -> Record:
    negatives = line.get("negatives", [])
    if not isinstance(negatives, list):
        raise _Bad("negatives", "must be a list of documents that do not answer the query")
    document = _text(line.get("document"), "document")
    if "query" not in line:  # a corpus line: one of the collection's documents, a candidate negative for every query
        if negatives:
            raise _Bad("negatives", "belong to a query; a line without 'query' is a corpus document alone")
        return {"query": "", "document": document, "negatives": []}
    return {"query": _text(line.get("query"), "query"), "document": document,
            "negatives": [_text(n, f"negatives[{i}]") for i, n in enumerate(negatives)]}


def _image(line: dict[str, Any]) -> Record:
    import base64
    import binascii

    value = _text(line.get("image"), "image")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("image", "must be a base64-encoded PNG") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise _Bad("image", "must be a PNG (the decoded bytes do not start with the PNG signature)")
    label = line.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, str | int)):
        raise _Bad("label", "must be a string or a whole number, the image's class")
    return {"image": data, "label": "" if label is None else str(label)}


PARSERS: dict[DatasetFormat, Callable[[dict[str, Any]], Record]] = {
    DatasetFormat.CHAT: _chat,
    DatasetFormat.COMPLETION: _completion,
    DatasetFormat.PREFERENCE: _preference,
    DatasetFormat.TEXT: _text_record,
    DatasetFormat.PAIRS: _pairs,
    DatasetFormat.IMAGE: _image,
}

# The key that tells a format apart, in detection order.
_MARKERS = (("messages", DatasetFormat.CHAT), ("preferred_output", DatasetFormat.PREFERENCE),
            ("completion", DatasetFormat.COMPLETION), ("text", DatasetFormat.TEXT), ("query", DatasetFormat.PAIRS),
            ("image", DatasetFormat.IMAGE), ("document", DatasetFormat.PAIRS))


def detect(first: dict[str, Any]) -> DatasetFormat | None:
    return next((fmt for key, fmt in _MARKERS if key in first), None)


def _lines(content: bytes) -> list[tuple[int, str]]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument.for_field("file", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]


def _plain_text(content: bytes) -> list[Record]:
    _lines(content)  # the UTF-8 check
    text = content.decode("utf-8")
    documents, start = [], 0
    for match in [*_BLANK_LINES.finditer(text), None]:
        end = match.start() if match else len(text)
        if text[start:end].strip():
            documents.append({"text": text[start:end].strip(), "_line": text.count("\n", 0, start) + 1})
        start = match.end() if match else start
    if not documents:
        raise InvalidArgument.for_field("file", "is empty; a text dataset needs at least one document")
    return documents


def parse(content: bytes, filename: str, declared: DatasetFormat | None = None,
          max_records: int | None = None) -> tuple[DatasetFormat, list[Record]]:
    """Validate every line; return the format and the normalized records, or raise InvalidArgument naming
    up to ``MAX_VIOLATIONS`` bad lines (``line[n].<field>``)."""
    if filename.lower().endswith(".txt") and declared in (None, DatasetFormat.TEXT):
        records = _plain_text(content)
        fmt = DatasetFormat.TEXT
    else:
        fmt, records = _parse_jsonl(content, declared)
    if max_records is not None and len(records) > max_records:
        raise InvalidArgument(f"the file has {len(records)} records; the limit is {max_records}",
                              [FieldViolation("file", f"at most {max_records} records")], reason="DATASET_TOO_LARGE")
    return fmt, records


def _parse_jsonl(content: bytes, declared: DatasetFormat | None) -> tuple[DatasetFormat, list[Record]]:
    lines = _lines(content)
    if not lines:
        raise InvalidArgument.for_field("file", "is empty; upload JSON Lines, one training example per line")
    fmt = declared
    records: list[Record] = []
    violations: list[FieldViolation] = []
    for number, raw in lines:
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            violations.append(FieldViolation(f"line[{number}]", f"is not valid JSON ({exc.msg} at column {exc.colno})"))
        except RecursionError:
            violations.append(FieldViolation(f"line[{number}]", "nests arrays or objects too deeply"))
        else:
            if not _is_text(raw, line):
                violations.append(FieldViolation(f"line[{number}]", "contains a lone UTF-16 surrogate escape "
                                                 "(such as \\ud800), which is not Unicode text; fix the encoding"))
            elif not isinstance(line, dict):
                violations.append(FieldViolation(f"line[{number}]", "must be a JSON object"))
            else:
                if fmt is None:
                    fmt = detect(line)
                    if fmt is None:
                        violations.append(FieldViolation(
                            f"line[{number}]", "has none of 'messages' (chat), 'prompt'+'completion', "
                            "'input'+'preferred_output'+'non_preferred_output' (preference), 'text', "
                            "'query'+'document' (pairs) or 'image'"))
                        break
                try:
                    records.append({**PARSERS[fmt](line), "_line": number})
                except _Bad as bad:
                    violations.append(FieldViolation(f"line[{number}].{bad.field}", bad.problem))
        if len(violations) >= MAX_VIOLATIONS:
            break
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more problems)" if len(violations) > 1 else ""
        raise InvalidArgument(f"{_readable(first.field)}: {first.description}{more}", violations,
                              reason="INVALID_TRAINING_FILE")
    assert fmt is not None
    return fmt, records


def _is_text(raw: str, value: Any) -> bool:
    """Whether every string of a decoded line is Unicode text: JSON may escape a lone surrogate ("\\ud800"),
    which no tokenizer or UTF-8 encoder accepts. Only lines with such an escape are walked."""
    if "\\u" not in raw:
        return True
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _readable(field: str) -> str:
    """``line[3].messages[1].role`` -> ``line 3, messages[1].role``."""
    match = re.match(r"line\[(\d+)\]\.?(.*)", field)
    if not match:
        return field
    return f"line {match.group(1)}" + (f", {match.group(2)}" if match.group(2) else "")
