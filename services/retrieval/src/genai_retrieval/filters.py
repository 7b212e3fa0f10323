"""Filters over chunk payloads: the rules a filter's conditions must follow, and the filters the pipelines use.

``convert.py`` builds a request's filter through these functions (it checks only which oneof of a
condition is set); each rule below is checked here and nowhere else. The stores translate the resulting
``types.Filter`` into Qdrant's filters.

    >>> metadata_key("author.name", "filter.must[0].field.key")
    'metadata.author.name'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from genai_core.errors import InvalidArgument

from genai_retrieval.payloads import CHUNK_INDEX, DOCUMENT_ID, METADATA
from genai_retrieval.types import Filter, Match, MatchAny, Range

_BOUNDS = ("gt", "gte", "lt", "lte")


def metadata_key(key: str, path: str) -> str:
    """The payload path of metadata field ``key`` (dotted for nested fields)."""
    if not key or any(not part for part in key.split(".")):
        raise InvalidArgument.for_field(path, "name a metadata field, such as 'author.name'")
    return f"{METADATA}.{key}"


def document_ids(ids: Sequence[str], path: str) -> MatchAny:
    if not ids:
        raise InvalidArgument.for_field(path, "name at least one document id")
    return MatchAny(DOCUMENT_ID, tuple(ids))


def any_of(key: str, strings: Sequence[str], integers: Sequence[int], path: str) -> MatchAny:
    if bool(strings) == bool(integers):
        raise InvalidArgument.for_field(path, "set exactly one of string_values or integer_values")
    return MatchAny(key, tuple(strings or integers))


def value_range(key: str, bounds: Mapping[str, float | str | None], path: str, datetime: bool = False) -> Range:
    """``bounds``: gt, gte, lt, lte (``None`` when unset); numbers, or RFC 3339 strings when ``datetime``."""
    if all(bounds.get(b) is None for b in _BOUNDS):
        raise InvalidArgument.for_field(path, "set at least one of gt, gte, lt, lte")
    return Range(key, datetime=datetime, **{b: bounds.get(b) for b in _BOUNDS})


def documents(ids: Sequence[str]) -> Filter:
    """Every chunk of the named documents."""
    return Filter(must=(MatchAny(DOCUMENT_ID, tuple(ids)),))


def first_chunk(document_id: str) -> Filter:
    """The chunk that stands for the document."""
    return Filter(must=(Match(DOCUMENT_ID, document_id), Match(CHUNK_INDEX, 0)))


FIRST_CHUNKS = Filter(must=(Match(CHUNK_INDEX, 0),))  # one chunk per document: listings and counts


def combine(*filters: Filter | None) -> Filter | None:
    """All of ``filters`` (``None`` and empty ones left out); ``None`` when nothing is left."""
    parts = [f for f in filters if f is not None and not f.empty()]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return Filter(must=tuple(parts))
