"""Who runs the queued jobs. A runner is started with the server and stopped after it; the API never talks
to it (jobs go through the queue), so runners are interchangeable:

* ``LocalRunner`` (default): keeps ``workers`` worker processes alive on this machine. A worker that dies
  (killed, out of memory) is restarted, and the job it held is handed over at once.
* ``RayRunner`` (``genai_finetune.ray_runner``): submits each job to a Ray cluster through the Ray Jobs API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from genai_finetune.settings import PREFIX
from genai_finetune.store import Store

logger = logging.getLogger(__name__)

# What each worker process finds in its environment (FinetuneSettings.worker_id / supervisor_pid).
WORKER_ID_ENV = f"{PREFIX}WORKER_ID"
SUPERVISOR_ENV = f"{PREFIX}SUPERVISOR_PID"


class Runner(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalRunner:
    """Supervises worker processes (``python -m genai_finetune worker``)."""

    name = "local"

    def __init__(self, store: Store, count: int, command: Sequence[str], env: Mapping[str, str], *,
                 restart_delay: float = 1.0, stop_grace: float = 25.0) -> None:
        self._store = store
        self._count = count
        self._command = list(command)
        self._env = dict(env)
        self._restart_delay = restart_delay
        self._stop_grace = stop_grace
        self._workers: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self._watcher: asyncio.Task | None = None
        self._stopping = False
        self.restarts = 0

    def _spawn(self, slot: int) -> None:
        worker_id = f"local-{slot}-{uuid.uuid4().hex[:8]}"
        env = {**self._env, WORKER_ID_ENV: worker_id, SUPERVISOR_ENV: str(os.getpid())}
        process = subprocess.Popen([*self._command, "worker"], env=env, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # our own stop order, not the terminal's Ctrl-C
        self._workers[slot] = (worker_id, process)
        logger.info("started fine-tune worker %s (pid %d)", worker_id, process.pid)

    @property
    def pids(self) -> list[int]:
        return [process.pid for _, process in self._workers.values()]

    async def start(self) -> None:
        for slot in range(self._count):
            self._spawn(slot)
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            for slot, (worker_id, process) in list(self._workers.items()):
                if process.poll() is None or self._stopping:
                    continue
                released = await asyncio.to_thread(self._store.release, worker_id)
                logger.warning("fine-tune worker %s exited with %s; %d job(s) handed over; restarting it",
                               worker_id, process.returncode, released)
                self.restarts += 1
                await asyncio.sleep(self._restart_delay)
                if not self._stopping:
                    self._spawn(slot)

    async def stop(self) -> None:
        """SIGTERM: each worker checkpoints its job at the end of the step and exits; SIGKILL after the grace."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for _, process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for worker_id, process in self._workers.values():
            try:
                await asyncio.to_thread(process.wait, self._stop_grace)
            except subprocess.TimeoutExpired:
                logger.warning("fine-tune worker %s did not stop in %.0f s; killing it", worker_id, self._stop_grace)
                process.kill()
                await asyncio.to_thread(process.wait)
            await asyncio.to_thread(self._store.release, worker_id)
        self._workers.clear()
