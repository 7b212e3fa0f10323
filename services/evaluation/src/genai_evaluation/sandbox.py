"""Run generated code away from the service: one process per program, limits, a wall-clock timeout.

    >>> # outcome = await Sandbox().run("assert 1 + 1 == 2", timeout_s=5, memory_mb=256)
    >>> # outcome.passed, outcome.status  -> (True, 'passed')

Each program runs through ``sandbox_launch.py`` in a new session; when the wall-clock timeout passes the
whole process group is killed (and, isolated, the PID namespace dies with it). What isolation a machine
gives is decided once (``probe``): namespaces and uid 65534 when running as root on Linux, rlimits only
otherwise; ``description`` says which, and GetInfo publishes it. A program that loops, allocates without
end, forks without end, writes outside its directory or opens a socket fails alone: its outcome is
``timed out``, ``failed: MemoryError``, ... and the service goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
OUTPUT_LIMIT = 64 * 1024
SIGNALS = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault",
           signal.SIGXFSZ: "file size limit"}


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # "passed", "timed out", "failed: <last error line>", ...
    seconds: float
    stdout: str = ""
    stderr: str = ""


def _status(code: int, stderr: str) -> str:
    if code == 0:
        return "passed"
    if code > 128 and code - 128 in {s.value for s in SIGNALS}:
        return f"failed: {SIGNALS[signal.Signals(code - 128)]}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    # The exception line, not the traceback's header (forked children interleave their tracebacks).
    errors = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    last = errors[-1] if errors else lines[-1] if lines else f"exit status {code}"
    return f"failed: {last[:200]}"


class Sandbox:
    def __init__(self, isolate: bool | None = None, max_parallel: int = 2) -> None:
        """``isolate``: None decides by probing (root and namespaces available)."""
        self._isolate = isolate
        self._slots = max_parallel
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    @property
    def isolated(self) -> bool:
        if self._isolate is None:
            self._isolate = self.probe()
        return self._isolate

    @property
    def description(self) -> str:
        if self.isolated:
            return ("own process per program; network, mount and PID namespaces (no network, read-only file "
                    "system, private /tmp); uid 65534; rlimits on CPU, memory, file size, open files, processes; "
                    "wall-clock timeout")
        return ("own process per program; rlimits on CPU, memory, file size, open files, processes; private "
                "temporary directory; wall-clock timeout (no network or file-system isolation: not root)")

    @staticmethod
    def probe() -> bool:
        """Whether namespaces work here: root on Linux and a trivial isolated program passes."""
        if sys.platform != "linux" or os.geteuid() != 0:
            return False
        import subprocess

        config = {"program": "pass", "timeout_s": 5, "memory_mb": 256, "isolate": True}
        try:
            done = subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER)], input=json.dumps(config).encode(),
                                  capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("sandbox namespaces unavailable (%s); using rlimits only", exc)
            return False
        if done.returncode != 0:
            logger.warning("sandbox namespaces unavailable (%s); using rlimits only",
                           done.stderr.decode(errors="replace").strip()[-300:])
        return done.returncode == 0

    def _semaphore(self) -> asyncio.Semaphore:
        # One per event loop: every run has its own loop on its own thread.
        loop = id(asyncio.get_running_loop())
        if loop not in self._semaphores:
            self._semaphores[loop] = asyncio.Semaphore(self._slots)
        return self._semaphores[loop]

    async def run(self, program: str, *, timeout_s: float, memory_mb: int) -> Outcome:
        config = {"program": program, "timeout_s": timeout_s, "memory_mb": memory_mb, "isolate": self.isolated}
        async with self._semaphore():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", str(LAUNCHER), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
            try:
                out, err = await asyncio.wait_for(proc.communicate(json.dumps(config).encode()), timeout_s + 2.0)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 5)
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():
                    raise
                return Outcome(False, "timed out", time.monotonic() - started)
            seconds = time.monotonic() - started
        stdout = out[:OUTPUT_LIMIT].decode(errors="replace")
        stderr = err[-OUTPUT_LIMIT:].decode(errors="replace")
        code = proc.returncode if proc.returncode is not None else -1
        if code == 125 and "sandbox setup failed" in stderr:
            logger.error("sandbox setup failed: %s", stderr.strip()[-300:])
        if code == 128 + signal.SIGKILL and seconds >= timeout_s:
            return Outcome(False, "timed out", seconds, stdout, stderr)
        return Outcome(code == 0, _status(code, stderr), seconds, stdout, stderr)
