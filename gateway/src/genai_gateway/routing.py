"""The route class every router of the gateway uses: JSON bodies are checked for text protobuf cannot carry.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a ``str`` that no UTF-8
encoder accepts, so building the gRPC message would fail deep inside protobuf (an internal error). Every
text field of every route must answer 400 instead, naming the field, so the check runs where the body is
decoded, once for all routes, rather than in each route.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

_NOT_UNICODE = "contains a lone UTF-16 surrogate, which is not Unicode text; send valid UTF-8 (or paired \\u escapes)"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bad_text(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first string (value or object key) in decoded JSON that is not valid Unicode, else None."""
    if isinstance(value, str):
        return None if _encodable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                return (*path, key.encode("utf-8", "backslashreplace").decode())
            found = bad_text(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = bad_text(item, (*path, i))
            if found is not None:
                return found
    return None


class InvalidText(RequestValidationError, HTTPException):
    """A validation error (rendered by the validation handler, caught by route classes that render their own
    shape) that FastAPI's body reader lets through: it re-raises HTTPExceptions and turns any other exception
    raised while reading the body into a bare "error parsing the body"."""

    def __init__(self, path: tuple[str | int, ...]) -> None:
        RequestValidationError.__init__(
            self, [{"type": "string_unicode", "loc": ("body", *path), "msg": _NOT_UNICODE, "input": None}]
        )
        self.status_code, self.detail, self.headers = 400, _NOT_UNICODE, None


class CheckedRequest(Request):
    """A request whose ``json()`` refuses text that protobuf (UTF-8) cannot encode, as a validation error."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:  # FastAPI reports a JSONDecodeError as a validation error, this not
                raise json.JSONDecodeError(f"the body is not UTF-8 ({exc.reason})", "", exc.start) from None
            value = json.loads(text)
            path = bad_text(value)
            if path is not None:
                raise InvalidText(path)
            self._json = value
        return self._json


class ApiRoute(APIRoute):
    """Every gateway route: parses JSON bodies through ``CheckedRequest``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request):
            return await handler(CheckedRequest(request.scope, request.receive))

        return route
