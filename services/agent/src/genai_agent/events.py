"""Each run's events, numbered and kept in memory so any number of streams can follow a run, late
joiners and reconnecting clients included (``follow(after=<last sequence seen>)`` loses nothing).

A finished run's log stays for ``retention`` seconds, then it is dropped; a run whose log is gone (or
that finished before a restart) is joined from its stored state instead (see ``runs.Runs.join``).
Token-level message events stop being recorded past ``max_events`` (the other kinds always are), so one
runaway run cannot eat the memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from genai_agent.types import EventPayload, MessageEvent, RunEnd, RunEvent, StreamMode


class EventLog:
    def __init__(self, run_id: str, max_events: int = 50_000) -> None:
        self.run_id = run_id
        self.events: list[RunEvent] = []
        self.closed_at: float | None = None
        self._max = max_events
        self._changed = asyncio.Event()

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0

    def append(self, payload: EventPayload) -> RunEvent | None:
        """Record an event and wake the followers; None when a message part was dropped over the limit."""
        if self.closed_at is not None:
            raise RuntimeError(f"the event log of run {self.run_id} is closed")
        if isinstance(payload, MessageEvent) and len(self.events) >= self._max:
            return None
        event = RunEvent(self.last_sequence + 1, datetime.now(UTC), payload)
        self.events.append(event)
        if isinstance(payload, RunEnd):
            self.closed_at = time.monotonic()
        self._wake()
        return event

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int = 0, modes: frozenset[StreamMode] | None = None) -> AsyncIterator[RunEvent]:
        """Events after sequence ``after`` (recorded ones first, then live ones), until the RunEnd."""
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.sequence > after and (modes is None or event.in_modes(modes)):
                    yield event
                if isinstance(event.payload, RunEnd):
                    return
            await self._changed.wait()


class EventLogs:
    """The logs of the runs of this process, by run id."""

    def __init__(self, retention: float, max_events: int) -> None:
        self._logs: dict[str, EventLog] = {}
        self._retention = retention
        self._max = max_events

    def open(self, run_id: str) -> EventLog:
        self._expire()
        log = self._logs[run_id] = EventLog(run_id, self._max)
        return log

    def get(self, run_id: str) -> EventLog | None:
        self._expire()
        return self._logs.get(run_id)

    def drop(self, run_id: str) -> None:
        self._logs.pop(run_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for run_id in [r for r, log in self._logs.items()
                       if log.closed_at is not None and now - log.closed_at > self._retention]:
            del self._logs[run_id]
