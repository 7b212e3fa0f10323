"""The request side shared by the local backends (the batching scheduler and llama.cpp).

Callers on the event loop ``submit`` a request and iterate its events; one worker thread drains
``waiting`` and ``emit``s events back across threads. The wait queue is bounded: when it is full,
``submit`` raises RESOURCE_EXHAUSTED instead of letting memory grow. A caller that stops reading,
or ``cancel(request_id)``, marks the request cancelled; the worker drops it at its next step.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from genai_core.errors import ResourceExhausted, Unavailable

from genai_inference.types import Event, GenerationRequest, TokenLogprob

DONE = object()  # end-of-stream marker on a request's event queue


@dataclass
class Pending:
    """One submitted request, as the worker thread sees it."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    enqueued: float
    cancelled: bool = False
    admitted: float = 0.0
    first_token: float = 0.0
    remaining: int = 0  # completions still running
    completion_tokens: int = 0
    cached_tokens: int = 0
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    outbox: Outbox | None = None  # set by a worker that hands events over once per step

    def emit(self, event: object) -> None:
        """Thread-safe: hand an event (or an exception, or DONE) to the caller's loop."""
        if self.outbox is not None:
            self.outbox.add(self, event)
        else:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Outbox:
    """The events one worker step produced, handed to the event loop in a single call: one wake-up of the
    loop per step instead of one per token of every sequence (16 streams: 16 cross-thread wake-ups a step)."""

    def __init__(self) -> None:
        self._items: list[tuple[Pending, object]] = []

    def add(self, pending: Pending, event: object) -> None:
        self._items.append((pending, event))

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, object]]] = {}
        for pending, event in items:
            by_loop.setdefault(pending.loop, []).append((pending.events, event))
        for loop, batch in by_loop.items():
            loop.call_soon_threadsafe(_deliver, batch)


def _deliver(batch: list[tuple[asyncio.Queue, object]]) -> None:
    for queue, event in batch:
        queue.put_nowait(event)


class Intake:
    def __init__(
        self,
        max_queue: int,
        *,
        on_reject: Callable[[], None] = lambda: None,
        on_depth: Callable[[int], None] = lambda depth: None,
    ) -> None:
        self.max_queue = max_queue
        self.wake = threading.Condition()
        self.waiting: collections.deque[Pending] = collections.deque()
        self.stopped = False
        self._by_id: dict[str, Pending] = {}
        self._on_reject = on_reject
        self._on_depth = on_depth

    def depth_changed(self) -> None:
        self._on_depth(len(self.waiting))

    async def submit(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self.stopped:
            raise Unavailable("the inference engine is shutting down")
        entry = Pending(request, asyncio.get_running_loop(), asyncio.Queue(), time.monotonic())
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                self._on_reject()
                raise ResourceExhausted(
                    f"the request queue is full ({self.max_queue} waiting); retry later", reason="QUEUE_FULL"
                )
            self.waiting.append(entry)
            self.depth_changed()
            self.wake.notify()
        self._by_id[request.request_id] = entry
        try:
            while True:
                event = await entry.events.get()
                if event is DONE:
                    return
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            entry.cancelled = True  # a client that stops reading frees its slot at the next step
            if self._by_id.get(request.request_id) is entry:
                del self._by_id[request.request_id]
            with self.wake:
                self.wake.notify()

    def cancel(self, request_id: str) -> bool:
        entry = self._by_id.get(request_id)
        if entry is None:
            return False
        entry.cancelled = True
        with self.wake:
            self.wake.notify()
        return True

    def stop(self) -> None:
        with self.wake:
            self.stopped = True
            self.wake.notify_all()
