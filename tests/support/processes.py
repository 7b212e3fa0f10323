"""Start the suite's services as real processes, wait for them and stop them gracefully.

Used by the end-to-end tests (``@pytest.mark.e2e``): each test starts what it needs with
``python -m <module>`` on free ports, exactly as ``make run`` would, and checks that
SIGTERM shuts every process down cleanly.

    port = free_port()
    proc = start_service("genai_tokenizer", {"GENAI_TOKENIZER_PORT": str(port)}, tmp_path / "tok.log")
    try:
        wait_grpc_serving(f"127.0.0.1:{port}", 120, proc=proc, log_path=tmp_path / "tok.log")
        ...
    finally:
        assert stop(proc, 15) == 0
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_service(module: str, env: Mapping[str, str], log_path: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    """Run ``python -m module`` from the repo root with ``env`` on top of this process's environment.

    stdout and stderr go to ``log_path`` (read it with :func:`log_tail` when something fails).
    The child runs in its own process group so that a stray Ctrl-C of pytest does not hit it twice.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(log_path: str | os.PathLike[str] | None, chars: int = 4000) -> str:
    """The last ``chars`` characters of a service log, for assertion messages."""
    if log_path is None:
        return ""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return text[-chars:]


def _check_alive(proc: subprocess.Popen[bytes] | None, what: str, log_path: str | os.PathLike[str] | None) -> None:
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"{what}: process exited with {proc.returncode} before it was ready\n{log_tail(log_path)}")


def wait_grpc_serving(
    target: str,
    timeout: float,
    *,
    service: str = "",
    proc: subprocess.Popen[bytes] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> None:
    """Poll the standard gRPC health service at ``target`` until it answers SERVING.

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` as soon as
    ``proc`` (when given) has exited; both messages carry the tail of ``log_path``.
    """
    from genai_core.healthcheck import check

    deadline = time.monotonic() + timeout
    while True:
        _check_alive(proc, target, log_path)
        # check() prints each probe's outcome; keep the test output clean.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            serving = check(target, service, timeout=2.0)
        if serving:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{target} not SERVING after {timeout:.0f} s\n{log_tail(log_path)}")
        time.sleep(0.25)


def wait_http_ok(
    url: str,
    timeout: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> None:
    """Poll ``url`` with GET until it answers 2xx; raises like :func:`wait_grpc_serving`."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        _check_alive(proc, url, log_path)
        try:
            with urllib.request.urlopen(url, timeout=2.0) as reply:
                if 200 <= reply.status < 300:
                    return
                last = f"HTTP {reply.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not OK after {timeout:.0f} s ({last})\n{log_tail(log_path)}")
        time.sleep(0.25)


def stop(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Send SIGTERM and wait up to ``timeout`` seconds; return the exit code.

    Returns ``None`` when the process did not exit in time, after killing it (SIGKILL),
    so a test can assert ``stop(proc, 15) == 0`` for a graceful shutdown. A process that
    had already exited keeps its own return code.
    """
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
