"""A dependency that exists only once the service is ready (a model loads after the port opens).

    >>> engine: Deferred[str] = Deferred("model")
    >>> engine.set("loaded")
    >>> engine.get()
    'loaded'

Before ``set``, ``get`` raises ``Unavailable``, which clients see as UNAVAILABLE and retry.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from genai_core.errors import Unavailable

T = TypeVar("T")


class Deferred(Generic[T]):
    def __init__(self, what: str) -> None:
        self._what = what
        self._value: T | None = None

    def set(self, value: T) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise Unavailable(f"the {self._what} is still loading; retry shortly")
        return self._value
