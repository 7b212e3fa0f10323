"""Stored Responses API responses: what ``previous_response_id``, ``GET /v1/responses/{id}`` and
``.../input_items`` read.

They live in this gateway process, the most recent ``capacity`` of them (the oldest is forgotten first):
a restart forgets them, and gateway replicas do not share them (the conversation state of a fleet belongs in
the agent service's threads). A response created with ``store: false`` is never kept.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from genai_gateway.routes import openai_protocol as chat


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as returned
    input_items: list[dict[str, Any]]  # this request's input items, with ids, for .../input_items
    conversation: list[chat.Message]  # every message up to and including the output: what a continuation sends


class ResponseStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, stored: StoredResponse) -> None:
        rid = stored.response["id"]
        self._items[rid] = stored
        self._items.move_to_end(rid)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None
