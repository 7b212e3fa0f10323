"""Test helpers: run services in-process on a free port and talk to them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_core.channels import create_channel
from genai_core.server import GrpcServer, ServiceSpec
from genai_core.settings import ServerSettings


@asynccontextmanager
async def running_server(
    services: Sequence[ServiceSpec],
    ready: Callable[[], Awaitable[None]] | None = None,
    settings: ServerSettings | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[tuple[GrpcServer, grpc.aio.Channel]]:
    """Start ``services`` on 127.0.0.1:0 with the production interceptors; yield server and channel.

    The server turns SERVING after ``ready`` (if given) completes, as in production.
    """
    server = GrpcServer(
        settings or ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5),
        services,
        tracer_provider=tracer_provider,
    )
    port = await server.start()
    if ready is not None:
        await ready()
    await server.set_serving()
    channel = create_channel(f"127.0.0.1:{port}", tracer_provider=tracer_provider)
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop(0.5)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed (Debian package postgresql); .ci/run installs it")


@contextmanager
def postgres_server(port: int = 0) -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 for tests; yields its DSN and stops it after.

    The cluster lives in a temporary directory (``initdb`` with trust auth); as root it runs as the
    ``postgres`` user, because PostgreSQL refuses to run as root. About a second to start.
    """
    bin_dir = _pg_bin()
    work = Path(tempfile.mkdtemp(prefix="genai-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    data = work / "data"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "check": True}
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], **quiet)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(work / "log"), "-o",
                    f"-p {port} -k {work} -c listen_addresses=127.0.0.1", "start"], **quiet)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False)
        shutil.rmtree(work, ignore_errors=True)
