"""Start the whole suite the way `make run` does (honcho + Procfile) on free ports, once per session.

The retrieval and agent services each run under their own honcho of the same Procfile, so a test can
restart one on the same data directory (``Suite.restart("agent")``) without reloading the models of the
others. The agent service gets the demo MCP server (``genai_agent.mcp_demo``) over stdio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from genai_core import services

from tests.e2e.otlp_sink import OtlpSink
from tests.support.processes import REPO_ROOT, free_port, log_tail, stop, wait_grpc_serving, wait_http_ok

RESTARTABLE = ("retrieval", "agent")


def _honcho(names: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`honcho start` of some Procfile entries, as `make run` starts all of them."""
    procfile = log.parent / "Procfile"
    procfile.write_text(services.procfile())  # the same Procfile `make run` generates
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "honcho"), "start", "-d", str(REPO_ROOT), "-f", str(procfile), *names],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@dataclass
class Suite:
    base_url: str
    targets: dict[str, str]  # service name -> host:port
    sink: OtlpSink
    metrics: dict[str, str]  # service name -> host:port of its Prometheus endpoint
    log: Path
    data_dir: Path
    logs: dict[str, Path]  # a restartable service's own log
    _env: dict[str, str] = field(repr=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(repr=False)

    @property
    def retrieval_log(self) -> Path:
        return self.logs["retrieval"]

    @property
    def tokenizer_target(self) -> str:
        return self.targets["tokenizer"]

    @property
    def inference_target(self) -> str:
        return self.targets["inference"]

    @property
    def retrieval_target(self) -> str:
        return self.targets["retrieval"]

    def restart(self, name: str) -> float:
        """Stop a restartable service gracefully (SIGTERM), start it again on the same data directory and
        wait until the gateway reports every backend ready; returns the seconds it took."""
        started = time.monotonic()
        log = self.logs[name]
        offset = log.stat().st_size
        stop(self._procs[name], 30)  # honcho itself exits 143 on SIGTERM; the service's own code is in its log
        stopped = log.read_bytes()[offset:].decode(errors="replace")
        assert f"{name}.1 stopped (rc=0)" in stopped, f"{name} did not stop cleanly\n{stopped}"
        self._procs[name] = _honcho([name], self._env, log)
        wait_http_ok(f"{self.base_url}/readyz", 120, proc=self._procs[name], log_path=log)
        return time.monotonic() - started

    def restart_retrieval(self) -> float:
        return self.restart("retrieval")


@pytest.fixture(scope="session")
def suite(tmp_path_factory) -> Suite:
    sink = OtlpSink()
    sink.start()
    work = tmp_path_factory.mktemp("suite")
    gateway_port = free_port()
    ports = {name: free_port() for name in services.SERVICES}
    metrics_ports = {name: free_port() for name in services.SERVICES}
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "GENAI_GATEWAY_PORT": str(gateway_port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s so the trace test waits little
    }
    # Every service of the table on free ports, with its own data dir and the shared model cache; every caller
    # (the gateway and each service) finds every service there.
    callers = ["GENAI_GATEWAY_", *(row.env_prefix for row in services.SERVICES.values())]
    for name, row in services.SERVICES.items():
        env[f"{row.env_prefix}PORT"] = str(ports[name])
        env[f"{row.env_prefix}METRICS_PORT"] = str(metrics_ports[name])
        env[f"{row.env_prefix}DATA_DIR"] = str(work / name)
        env[f"{row.env_prefix}CACHE_DIR"] = str(REPO_ROOT / "var" / "cache")
        env.update({row.target_env(caller): f"127.0.0.1:{ports[name]}" for caller in callers})
    mcp = work / "mcp.yaml"
    mcp.write_text('servers:\n  demo:\n    command: "{python}"\n    args: ["-m", "genai_agent.mcp_demo"]\n')
    env["GENAI_AGENT_MCP_SERVERS"] = str(mcp)
    # The inference service loads fine-tune artifacts by id from the fine-tune service's data dir (a shared volume).
    env["GENAI_INFERENCE_ARTIFACTS_DIR"] = str(work / "finetune" / "artifacts")
    env["GENAI_EMBEDDING_ARTIFACTS_DIR"] = str(work / "finetune" / "artifacts")  # encoders and rerankers
    names = [line.split(":", 1)[0].strip() for line in services.procfile().splitlines()]
    log = work / "honcho.log"
    logs = {name: work / f"{name}.log" for name in RESTARTABLE}
    proc = _honcho([n for n in names if n not in RESTARTABLE], env, log)
    procs = {name: _honcho([name], env, logs[name]) for name in RESTARTABLE}
    base = f"http://127.0.0.1:{gateway_port}"
    suite = Suite(base, {name: f"127.0.0.1:{port}" for name, port in ports.items()}, sink,
                  {name: f"127.0.0.1:{port}" for name, port in metrics_ports.items()}, log, work / "tokenizer",
                  logs, env, procs)
    try:
        for name in RESTARTABLE:
            wait_grpc_serving(suite.targets[name], 300, proc=procs[name], log_path=logs[name])
        wait_http_ok(f"{base}/readyz", 300, proc=proc, log_path=log)
        yield suite
    finally:
        with ThreadPoolExecutor(len(RESTARTABLE) + 1) as pool:  # at once: a shutdown drains for up to a few seconds
            codes = list(pool.map(lambda p: stop(p, 30), [*suite._procs.values(), proc]))
        sink.stop()
        tails = "\n".join(log_tail(p) for p in [log, *logs.values()])
        assert None not in codes, f"the suite did not stop within 30 s\n{tails}"
