"""Copying optional JSON fields onto proto messages: only the ones the client sent.

Proto3 ``optional`` fields carry presence, so an unset field must stay unset (the service then
applies its own default) rather than being written as zero.
"""

from __future__ import annotations

from typing import Any


def set_present(message: Any, **values: Any) -> Any:
    """``setattr`` every value that is not None; return the message."""
    for name, value in values.items():
        if value is not None:
            setattr(message, name, value)
    return message
