"""Long-running operations (AIP-151), domain side: start work in the background, let it report progress,
keep its outcome for a while. No grpc or protobuf here, so a domain module may use it;
``genai_core.operations_servicer`` serves it as ``genai.operations.v1.OperationsService``.

    >>> operations = Operations("retrieval")
    >>> # op = operations.start("retrieval.ingest", "acme", lambda report: ingest(documents, report))
    >>> # op.name == "operations/retrieval-5f0c..."; later operations.get(op.name, "acme").done

The work is a coroutine function taking ``report``: it calls ``report(progress)`` with a domain value (the
servicer converts it) whenever it has advanced, and returns its result. Whatever it raises becomes the
operation's error; cancelling (``cancel`` or the server stopping) ends it with ``Cancelled``.

An operation lives in the memory of the process that runs it: it does not survive a restart (a lookup after
one is NOT_FOUND), which is why work run this way must be all-or-nothing or resumable by the caller.
Finished operations are kept ``keep_seconds`` (and at most ``max_kept`` of them), then forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from genai_core.errors import Cancelled, GenAIError, InvalidArgument, NotFound

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

Report = Callable[[Any], None]
Work = Callable[[Report], Awaitable[Any]]


@dataclass
class Operation:
    """One operation's state, as ``get`` returns it (a live object: it changes while the work runs)."""

    name: str  # "operations/{service}-{id}"
    kind: str  # "{service}.{verb}"
    tenant: str
    create_time: float  # Unix seconds
    update_time: float
    progress: Any = None  # the last value the work reported
    done: bool = False
    result: Any = None  # set when the work returned
    error: BaseException | None = None  # set when it failed or was cancelled
    _task: asyncio.Task | None = field(default=None, repr=False)


def operation_service(name: str) -> str:
    """The service that owns the operation called ``name`` ("operations/retrieval-ab12" -> "retrieval")."""
    _, _, rest = name.partition("operations/")
    service, sep, _ = rest.partition("-")
    if not name.startswith("operations/") or not sep or not service:
        raise InvalidArgument.for_field("name", f"{name!r} is not an operation name; use operations/<service>-<id>")
    return service


class Operations:
    """The operations one service runs; built once in its composition root and closed with it."""

    def __init__(self, service: str, *, keep_seconds: float = 24 * 3600, max_kept: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.keep_seconds = keep_seconds
        self.max_kept = max_kept
        self._clock = clock
        self._operations: OrderedDict[str, Operation] = OrderedDict()  # oldest first

    def start(self, kind: str, tenant: str, work: Work) -> Operation:
        """Run ``work`` in the background and return its operation at once (not done yet)."""
        self._forget_old()
        now = self._clock()
        op = Operation(f"operations/{self.service}-{uuid.uuid4().hex}", kind, tenant or DEFAULT_TENANT, now, now)

        def report(progress: Any) -> None:
            op.progress, op.update_time = progress, self._clock()

        op._task = asyncio.create_task(self._run(op, work, report), name=op.name)
        self._operations[op.name] = op
        return op

    async def _run(self, op: Operation, work: Work, report: Report) -> None:
        try:
            op.result = await work(report)
        except asyncio.CancelledError:
            op.error = Cancelled("the operation was cancelled before it finished", reason="OPERATION_CANCELLED",
                                 resource_type="operation", resource_name=op.name)
        except Exception as exc:  # noqa: BLE001 - the work's failure is the operation's outcome
            if not isinstance(exc, GenAIError):
                logger.exception("operation %s (%s) failed", op.name, op.kind)
            op.error = exc
        finally:
            op.done, op.update_time = True, self._clock()

    def get(self, name: str, tenant: str) -> Operation:
        """The operation ``name`` of ``tenant``; NotFound if it never existed here, is forgotten, or is another's."""
        op = self._operations.get(name)
        if op is None or op.tenant != (tenant or DEFAULT_TENANT):
            raise NotFound(
                f"operation {name!r} does not exist; it may have finished more than {self.keep_seconds:.0f} s ago "
                f"or its {self.service} service may have restarted since it started",
                resource_type="operation", resource_name=name)
        return op

    def list(self, tenant: str, kind: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Operation], str]:
        """One page of ``tenant``'s operations, newest first, and the token of the next page ("" at the end)."""
        self._forget_old()
        size = page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidArgument.for_field("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        if page_token and not (page_token.isascii() and page_token.isdigit()):
            raise InvalidArgument.for_field("page_token", "use the next_page_token of a previous response")
        start = int(page_token or 0)
        mine = [op for op in reversed(self._operations.values())
                if op.tenant == (tenant or DEFAULT_TENANT) and (not kind or op.kind == kind)]
        page = mine[start:start + size]
        return page, str(start + size) if start + size < len(mine) else ""

    def cancel(self, name: str, tenant: str) -> Operation:
        """Ask the operation to stop (it ends as cancelled); one that has ended stays as it is."""
        op = self.get(name, tenant)
        if not op.done and op._task is not None:
            op._task.cancel()
        return op

    async def close(self) -> None:
        """Cancel every running operation and wait for it to stop (the server is shutting down)."""
        running = [op._task for op in self._operations.values() if op._task is not None and not op.done]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _forget_old(self) -> None:
        horizon = self._clock() - self.keep_seconds
        finished = [op for op in self._operations.values() if op.done]
        excess = len(self._operations) - self.max_kept
        for op in finished:  # oldest first
            if op.update_time < horizon or excess > 0:
                del self._operations[op.name]
                excess -= 1
