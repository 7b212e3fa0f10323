"""Answer-extraction filters: a registry of named steps, chained per ``filter_list`` entry as in lm-eval.

Each step maps the list of a document's responses (one per repeat) to a new list:

    >>> apply([("regex", {"regex_pattern": r"#### (\\-?[0-9\\.\\,]+)"}), ("take_first", {})], ["so #### 42", "x"])
    ['42']
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from genai_core.errors import InvalidArgument

Step = Callable[[list[str], Mapping[str, Any]], list[str]]
INVALID = "[invalid]"


def _regex(responses: list[str], options: Mapping[str, Any]) -> list[str]:
    pattern = re.compile(options["regex_pattern"])
    group_select = int(options.get("group_select", 0))
    fallback = options.get("fallback", INVALID)
    out = []
    for response in responses:
        matches = pattern.findall(response)
        if not matches:
            out.append(fallback)
            continue
        match = matches[group_select] if -len(matches) <= group_select < len(matches) else matches[0]
        if isinstance(match, tuple):  # several groups: the first one that matched, as lm-eval picks
            match = next((m for m in match if m), fallback)
        out.append(match.strip())
    return out


def _take_first(responses: list[str], _: Mapping[str, Any]) -> list[str]:
    return responses[:1]


def _majority_vote(responses: list[str], _: Mapping[str, Any]) -> list[str]:
    return [collections.Counter(responses).most_common(1)[0][0]] if responses else []


STEPS: dict[str, Step] = {
    "regex": _regex,
    "take_first": _take_first,
    "majority_vote": _majority_vote,
    "remove_whitespace": lambda rs, _: [r.lstrip() for r in rs],
    "strip": lambda rs, _: [r.strip() for r in rs],
    "lowercase": lambda rs, _: [r.lower() for r in rs],
    "uppercase": lambda rs, _: [r.upper() for r in rs],
}


def check(function: str, options: Mapping[str, Any], where: str) -> None:
    if function not in STEPS:
        raise InvalidArgument.for_field(f"{where}.function", f"unknown filter {function!r}; known: {', '.join(sorted(STEPS))}")
    if function == "regex":
        pattern = options.get("regex_pattern")
        if not isinstance(pattern, str):
            raise InvalidArgument.for_field(f"{where}.regex_pattern", "the regex filter needs regex_pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidArgument.for_field(f"{where}.regex_pattern", f"not a valid regex: {exc}") from None
        if not isinstance(options.get("group_select", 0), int):
            raise InvalidArgument.for_field(f"{where}.group_select", "must be an integer")


def apply(steps: Sequence[tuple[str, Mapping[str, Any]]], responses: Sequence[str]) -> list[str]:
    out = list(responses)
    for function, options in steps:
        out = STEPS[function](out, options)
    return out
