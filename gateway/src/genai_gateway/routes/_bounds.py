"""Integer and list types of the HTTP schema, bounded by their protobuf field's type and the service's limit.

An unbounded JSON integer (``"top_k": 5000000000``) fails when the gateway builds the message ("Value out of
range"), so every integer the gateway copies into a proto field carries that field's bounds, and limits come
from ``genai_core.limits``: the same values the services default to.
"""

from __future__ import annotations

from typing import Annotated

from genai_core.limits import PROTO_MAX
from pydantic import Field

UINT32_MAX = PROTO_MAX["uint32"]
# The largest integer a JSON number carries exactly (I-JSON, RFC 7493): 64-bit fields such as seeds are bounded
# by it, since OpenAPI bounds beyond it print as floats that round past the field's range.
JSON_SAFE_MAX = 2**53 - 1

UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]
Positive32 = Annotated[int, Field(ge=1, le=UINT32_MAX)]
TokenId = Annotated[int, Field(ge=0, le=UINT32_MAX, description="A token id of the model's tokenizer.")]
NonEmpty = Annotated[str, Field(min_length=1)]
Seed = Annotated[int, Field(ge=-JSON_SAFE_MAX, le=JSON_SAFE_MAX, description="Same seed and input: same output.")]
