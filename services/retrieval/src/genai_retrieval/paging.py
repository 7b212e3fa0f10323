"""Pages of a listing: the page token is the offset of the page's first item.

    >>> paginate(list("abcde"), "", 2)
    Page(items=['a', 'b'], next_page_token='2')
"""

from __future__ import annotations

from typing import TypeVar

from genai_core.errors import InvalidArgument
from genai_core.limits import RETRIEVAL

from genai_retrieval.types import Page

DEFAULT_PAGE = 100

T = TypeVar("T")


def paginate(items: list[T], page_token: str, page_size: int) -> Page[T]:
    """One page of ``items``; ``page_size`` 0 means ``DEFAULT_PAGE``."""
    if page_token and not (page_token.isascii() and page_token.isdigit()):  # "4²".isdigit() is True
        raise InvalidArgument.for_field("page_token", "pass the next_page_token of a previous response")
    start = int(page_token) if page_token else 0
    size = page_size or DEFAULT_PAGE
    if size > RETRIEVAL.max_page_size:  # the one owner of this rule (the gateway's schema states the same bound)
        raise InvalidArgument.for_field("page_size", f"must be at most {RETRIEVAL.max_page_size}")
    return Page(items[start : start + size], str(start + size) if start + size < len(items) else "")
