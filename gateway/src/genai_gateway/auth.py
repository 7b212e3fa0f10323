"""Optional API keys: ``Authorization: Bearer <key>``; no keys configured means open (local use)."""

from __future__ import annotations

import hmac

from fastapi import Request

from genai_gateway.errors import GatewayError


class ApiKeys:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [k.encode() for k in keys if k]

    async def __call__(self, request: Request) -> None:
        """FastAPI dependency: raises 401 unless the bearer token matches a configured key."""
        if not self._keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        if not presented:  # langgraph-sdk sends its api_key as x-api-key
            presented = request.headers.get("x-api-key", "").strip().encode()
        # Compare against every key without stopping early, so timing reveals nothing.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        if not matched:
            raise GatewayError(
                401,
                "missing or invalid API key; send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
                "authentication_error",
                "invalid_api_key",
            )
