"""google.protobuf.Struct ⇄ plain JSON values, keeping integers integers.

Struct stores every number as a double, so ``{"maxLength": 12}`` arrives as ``12.0``. JSON Schema
validators (and tool arguments) care about the difference; whole numbers come back as ``int``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def whole_numbers(value: Any) -> Any:
    """``value`` (a Struct's JSON: dicts, lists, scalars) with whole-number doubles as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict, with whole-number doubles turned back into ints."""
    return whole_numbers(json_format.MessageToDict(struct))
