"""A backend-neutral filter model: the proto's typed conditions, validated once, turned into Qdrant filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genai_core.errors import InvalidArgument

# Chunk payload keys; user metadata lives under METADATA, so filter keys name metadata fields.
METADATA = "metadata"
DOCUMENT_ID = "document_id"


@dataclass(frozen=True)
class Match:
    key: str  # a payload path, already prefixed
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    datetime: bool = False  # bounds are RFC 3339 strings then


@dataclass
class Filter:
    must: list[Any] = field(default_factory=list)
    should: list[Any] = field(default_factory=list)
    must_not: list[Any] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.must or self.should or self.must_not)


def documents(ids: list[str]) -> Filter:
    return Filter(must=[MatchAny(DOCUMENT_ID, tuple(ids))])


def _value(v, path: str) -> str | int | bool:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument.for_field(path, "set string_value, integer_value or bool_value")
    return getattr(v, kind)


def _ts(ts) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _condition(c, path: str):
    kind = c.WhichOneof("condition")
    if kind == "filter":
        return from_proto(c.filter, f"{path}.filter")
    if kind == "document_ids":
        if not c.document_ids.document_ids:
            raise InvalidArgument.for_field(f"{path}.document_ids", "name at least one document id")
        return MatchAny(DOCUMENT_ID, tuple(c.document_ids.document_ids))
    if kind != "field":
        raise InvalidArgument.for_field(path, "set field, filter or document_ids")
    f = c.field
    if not f.key or any(not part for part in f.key.split(".")):
        raise InvalidArgument.for_field(f"{path}.field.key", "name a metadata field, such as 'author.name'")
    key = f"{METADATA}.{f.key}"
    pred = f.WhichOneof("predicate")
    if pred == "equals":
        return Match(key, _value(f.equals, f"{path}.field.equals"))
    if pred == "any_of":
        strings, ints = list(f.any_of.string_values), list(f.any_of.integer_values)
        if bool(strings) == bool(ints):
            raise InvalidArgument.for_field(f"{path}.field.any_of", "set exactly one of string_values or integer_values")
        return MatchAny(key, tuple(strings or ints))
    if pred == "range":
        r = f.range
        bounds = {b: getattr(r, b) if r.HasField(b) else None for b in ("gt", "gte", "lt", "lte")}
        if all(v is None for v in bounds.values()):
            raise InvalidArgument.for_field(f"{path}.field.range", "set at least one of gt, gte, lt, lte")
        return Range(key, **bounds)
    if pred == "timestamp_range":
        r = f.timestamp_range
        bounds = {b: _ts(getattr(r, b)) if r.HasField(b) else None for b in ("gt", "gte", "lt", "lte")}
        if all(v is None for v in bounds.values()):
            raise InvalidArgument.for_field(f"{path}.field.timestamp_range", "set at least one of gt, gte, lt, lte")
        return Range(key, datetime=True, **bounds)
    raise InvalidArgument.for_field(f"{path}.field", "set equals, any_of, range or timestamp_range")


def from_proto(f, path: str = "filter") -> Filter:
    """The proto Filter as a neutral Filter; INVALID_ARGUMENT names the bad condition's path."""
    return Filter(
        must=[_condition(c, f"{path}.must[{i}]") for i, c in enumerate(f.must)],
        should=[_condition(c, f"{path}.should[{i}]") for i, c in enumerate(f.should)],
        must_not=[_condition(c, f"{path}.must_not[{i}]") for i, c in enumerate(f.must_not)],
    )


def combine(*filters: Filter | None) -> Filter | None:
    parts = [f for f in filters if f is not None and not f.empty()]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return Filter(must=list(parts))
