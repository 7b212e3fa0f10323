"""The tools that ship with the service: calculator, retrieval search, token count, current time, HTTP GET.

``standard_tools(deps)`` builds them; each factory is an entry of ``FACTORIES`` (a registry, so a
deployment can leave one out or add its own).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from genai_agent.calculator import evaluate, format_number
from genai_agent.ports import Retrieval, Tokens
from genai_agent.toolkit import Tool, ToolContext

DEFAULT_TOP_K = 4
MAX_TOP_K = 20

# Plain arithmetic: numbers, + - * / % **, parentheses. Under constrained decoding (the inference service
# with strict tools) the pattern is what makes a small model write "37 * 91" instead of free text; a
# remote model is not constrained and may also use the functions the calculator knows.
ARITHMETIC = r"^\(*-?[0-9]+(\.[0-9]+)?\)*( ?(\*\*|[-+*/%]) ?\(*-?[0-9]+(\.[0-9]+)?\)*)*$"


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


class ToolInputError(ValueError):
    """The model called a tool with arguments it cannot run with; the message goes back to the model."""


@dataclass(frozen=True)
class HttpPolicy:
    """Which URLs ``http_get`` may fetch: only those starting with an allowed prefix (none by default)."""

    allow: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 1_000_000

    def allows(self, url: str) -> bool:
        return any(url.startswith(prefix) for prefix in self.allow)


@dataclass(frozen=True)
class ToolDeps:
    retrieval: Retrieval
    tokens: Tokens
    http: HttpPolicy
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def _string(args: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = args.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ToolInputError(f"'{key}' must be a non-empty string")
    return value


def calculator(_: ToolDeps) -> Tool:
    async def run(args: dict[str, Any], _: ToolContext) -> str:
        return format_number(evaluate(_string(args, "expression")))

    return Tool(
        "calculator",
        "Evaluate an arithmetic expression such as '(17 + 3) * 12 / 5' (+ - * / % **, parentheses; also sqrt, "
        "log, exp, sin, cos, round, min, max, pi and e).",
        _schema({"expression": {"type": "string", "description": "the expression", "maxLength": 80,
                                "pattern": ARITHMETIC}}, ("expression",)),
        run,
    )


def search(deps: ToolDeps) -> Tool:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        query = _string(args, "query")
        collection = str(args.get("collection") or ctx.spec.collection)
        if not collection:
            raise ToolInputError("no collection: pass 'collection' or give the assistant a collection")
        top_k = args.get("top_k") or ctx.spec.top_k or DEFAULT_TOP_K
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ToolInputError(f"'top_k' must be an integer from 1 to {MAX_TOP_K}")
        hits = await deps.retrieval.search(ctx.tenant, collection, query, top_k)
        if not hits:
            return f"No results in collection {collection!r} for {query!r}."
        return "\n\n".join(
            f"[{i}] {h.document_id}{f' p.{h.page_number}' if h.page_number else ''} (score {h.score:.3f}): {h.text}"
            for i, h in enumerate(hits, 1)
        )

    return Tool(
        "search",
        "Search the knowledge base (a retrieval collection) and return the most relevant passages.",
        _schema({"query": {"type": "string", "description": "what to search for", "maxLength": 200}}, ("query",)),
        run,
        provider="retrieval",
    )


def token_count(deps: ToolDeps) -> Tool:
    async def run(args: dict[str, Any], _: ToolContext) -> str:
        text = _string(args, "text", required=False)
        (count,) = await deps.tokens.count([text])
        return f"{count} tokens"

    return Tool(
        "token_count",
        "Count the tokens of a text with the model's tokenizer.",
        _schema({"text": {"type": "string", "description": "the text to count", "maxLength": 4000}}, ("text",)),
        run,
        provider="tokenizer",
    )


def current_time(deps: ToolDeps) -> Tool:
    async def run(args: dict[str, Any], _: ToolContext) -> str:
        name = str(args.get("timezone") or "UTC")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolInputError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Vienna'") from None
        now = deps.now().astimezone(zone)
        return f"{now.isoformat(timespec='seconds')} ({now:%A}, {name})"

    return Tool(
        "current_time",
        "The current date and time, in UTC or in an IANA time zone such as 'Europe/Vienna'.",
        _schema({"timezone": {"type": "string", "description": "IANA time zone", "pattern": "^[A-Za-z_+/-]{1,40}$"}}),
        run,
    )


def http_get(deps: ToolDeps) -> Tool:
    async def run(args: dict[str, Any], _: ToolContext) -> str:
        url = _string(args, "url")
        if not deps.http.allows(url):
            raise ToolInputError(f"the URL {url!r} is not on the allow-list of this deployment")
        # No redirects: a redirect could leave the allow-list.
        async with httpx.AsyncClient(timeout=deps.http.timeout, follow_redirects=False) as client:
            async with client.stream("GET", url) as reply:
                body = b""
                async for part in reply.aiter_bytes():
                    body += part
                    if len(body) > deps.http.max_bytes:
                        body = body[: deps.http.max_bytes]
                        break
        text = body.decode(reply.encoding or "utf-8", errors="replace")
        return json.dumps({"status": reply.status_code, "content_type": reply.headers.get("content-type", ""),
                           "body": text}, ensure_ascii=False)

    return Tool(
        "http_get",
        "Fetch a URL with HTTP GET and return its status and body (only URLs this deployment allows).",
        _schema({"url": {"type": "string", "description": "the URL", "maxLength": 2000}}, ("url",)),
        run,
        requires_approval=True,  # it reaches outside the suite: a human confirms each call by default
    )


FACTORIES: dict[str, Callable[[ToolDeps], Tool]] = {
    "calculator": calculator,
    "search": search,
    "token_count": token_count,
    "current_time": current_time,
    "http_get": http_get,
}


def standard_tools(deps: ToolDeps) -> list[Tool]:
    return [factory(deps) for factory in FACTORIES.values()]
