"""The sandbox contains what generated code may do: loop, allocate, fork, write outside its directory, open
a socket. Each program fails alone (with a clear outcome) while a good program next to it passes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from genai_evaluation.sandbox import Sandbox

pytestmark = pytest.mark.slow

ISOLATED = Sandbox.probe()


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(max_parallel=4)


async def test_good_and_failing_programs(sandbox):
    ok, bad = await asyncio.gather(sandbox.run("assert sorted([3, 1]) == [1, 3]", timeout_s=5, memory_mb=256),
                                   sandbox.run("assert 1 == 2, 'wrong'", timeout_s=5, memory_mb=256))
    assert ok.passed and ok.status == "passed"
    assert not bad.passed and bad.status == "failed: AssertionError: wrong"


async def test_hostile_programs_are_contained_and_the_caller_is_unharmed(sandbox, tmp_path):
    outside = Path(__file__).with_name(f"escaped-{os.getpid()}.txt")  # a directory the service can write to
    with socket.socket() as listener:  # a server the program must not reach
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        programs = {
            "loop": "while True:\n    pass",
            "sleep": "import time\ntime.sleep(60)",
            "memory": "x = bytearray(8 * 1024 ** 3)",
            "fork bomb": "import os\nwhile True:\n    os.fork()",
            "write outside": f"open({str(outside)!r}, 'w').write('escaped')",
            "write to /tmp": f"open({str(tmp_path / 'escaped.txt')!r}, 'w').write('escaped')",
            "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)",
            "huge file": "open('big', 'w').write('x' * (64 << 20))",
        }
        started = time.monotonic()
        outcomes = dict(zip(programs, await asyncio.gather(
            *(sandbox.run(p, timeout_s=2, memory_mb=256) for p in programs.values()),
            sandbox.run("print('still fine')", timeout_s=5, memory_mb=256)), strict=False))
        elapsed = time.monotonic() - started
    assert not any(o.passed for o in outcomes.values()), outcomes
    assert outcomes["loop"].status in ("timed out", "failed: CPU time limit", "failed: killed")
    assert outcomes["sleep"].status == "timed out"
    assert outcomes["memory"].status == "failed: MemoryError"
    assert outcomes["huge file"].status.startswith("failed:")
    assert elapsed < 20  # the wall-clock timeout ends even a sleeping program
    if ISOLATED:
        assert outcomes["fork bomb"].status.startswith("failed:")
        assert "Read-only file system" in outcomes["write outside"].status
        assert "No such file or directory" in outcomes["write to /tmp"].status  # its /tmp is private
        assert "Network is unreachable" in outcomes["network"].status
    assert not outside.exists() and not (tmp_path / "escaped.txt").exists()
    # nothing is left running, and the service's own process still works
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _is_program(p)]
    assert not leftovers
    again = await sandbox.run("print(6 * 7)", timeout_s=5, memory_mb=256)
    assert again.passed and again.stdout.strip() == "42"


def _is_program(pid: str) -> bool:
    try:
        return "program.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.mark.skipif(not ISOLATED, reason="namespaces need root on Linux")
def test_isolation_is_described():
    assert "namespaces" in Sandbox().description
