"""Jinja templates over documents, as lm-evaluation-harness reads ``doc_to_text`` and friends.

A value that names a field of the document is that field; anything else is a Jinja template rendered with
the document's fields (sandboxed: registered tasks come from users). A template that renders a list (``{{
choices }}``) is read back with ``ast.literal_eval``, as lm-eval does for ``doc_to_choice``.

    >>> render("Q: {{q}}", {"q": "2+2?"})
    'Q: 2+2?'
    >>> render("q", {"q": "2+2?"})
    '2+2?'
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from typing import Any

from genai_core.errors import InvalidArgument
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _regex_replace(value: str, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, value)


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


@lru_cache(maxsize=512)
def _compiled(template: str):
    return _ENV.from_string(template)


def check(template: str, field: str) -> None:
    """Raise ``InvalidArgument`` naming ``field`` if ``template`` is not valid Jinja."""
    try:
        _compiled(template)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise InvalidArgument.for_field(field, f"template error{f' at line {line}' if line else ''}: {exc}") from None


def render(template: str, doc: dict[str, Any], **extra: Any) -> str:
    """``doc[template]`` when it names a field, else the rendered template."""
    if template in doc and not extra:
        value = doc[template]
        return value if isinstance(value, str) else str(value)
    try:
        return _compiled(template).render(**doc, **extra)
    except TemplateError as exc:
        raise InvalidArgument.for_field("doc_to_text", f"rendering failed for a document: {exc}") from None


def value(template: str | int, doc: dict[str, Any]) -> Any:
    """A field's raw value (list, int, str) or the template's rendering, turned back into a Python value
    when it looks like a literal (``"[1, 2]"``, ``"3"``)."""
    if isinstance(template, int):
        return template
    if template in doc:
        return doc[template]
    text = render(template, doc)
    stripped = text.strip()
    if stripped[:1] in "[(" or stripped.lstrip("-").isdigit():
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
    return text
