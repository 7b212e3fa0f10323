"""Start a service as its own process for a benchmark, wait until it serves, and read its peak RSS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    proc: subprocess.Popen
    target: str

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has held so far."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def settle(self, quiet_s: float = 3.0, timeout: float = 600.0) -> None:
        """Wait until the process has used no CPU for ``quiet_s`` (background work such as an index build is done)."""
        deadline = time.monotonic() + timeout
        last, since = self.cpu_seconds(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = self.cpu_seconds()
            if now - last > 0.05:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return


async def wait_serving(service: Service, timeout: float = 300) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(service.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise RuntimeError(f"{service.proc.args} exited with {service.proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{service.proc.args} did not become ready")


@contextlib.asynccontextmanager
async def serving(module: str, prefix: str, **env: str) -> AsyncIterator[Service]:
    """``python -m module`` on a free port with ``GENAI_<prefix>_*`` settings from ``env``; stopped on exit."""
    port = free_port()
    environ = {**os.environ, f"GENAI_{prefix}_PORT": str(port), f"GENAI_{prefix}_METRICS_PORT": "0",
               "GENAI_LOG_LEVEL": "WARNING", **{f"GENAI_{prefix}_{k.upper()}": v for k, v in env.items()}}
    service = Service(subprocess.Popen([sys.executable, "-m", module], env=environ, cwd=REPO), f"127.0.0.1:{port}")
    try:
        await wait_serving(service)
        yield service
    finally:
        service.proc.terminate()
        try:
            service.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.proc.kill()
