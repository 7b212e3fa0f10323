"""The ``X-Tenant`` header of the agent routes: a tenant is one name across the suite (the same rule as
for the collections it owns), so a name no service stores is a 400 naming the header, and an empty header
is an error, not the tenant ``default``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Request
from genai_core.limits import RETRIEVAL

from genai_gateway.errors import GatewayError

HEADER = "X-Tenant"
DEFAULT = "default"
Tenant = Annotated[str, Header(alias=HEADER, pattern=RETRIEVAL.name_pattern,
                               description="the tenant that owns threads and assistants (default: `default`); an "
                                           "empty header is an error, not the default tenant")]


def tenant_of(request: Request) -> str:
    """The tenant of a route that does not declare the header (the OpenAI routes serving agents)."""
    value = request.headers.get(HEADER)
    if value is None:
        return DEFAULT
    if not re.fullmatch(RETRIEVAL.name_pattern, value):
        raise GatewayError(400, f"{HEADER}: a tenant name matches {RETRIEVAL.name_pattern}", "invalid_request_error",
                           "invalid_argument", HEADER)
    return value
