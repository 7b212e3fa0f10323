"""Start the whole suite the way `make run` does (honcho + Procfile) on free ports, once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.otlp_sink import OtlpSink
from tests.support.processes import REPO_ROOT, free_port, log_tail, stop, wait_http_ok


@dataclass(frozen=True)
class Suite:
    base_url: str
    tokenizer_target: str
    inference_target: str
    retrieval_target: str
    sink: OtlpSink
    log: Path
    data_dir: Path


@pytest.fixture(scope="session")
def suite(tmp_path_factory) -> Suite:
    sink = OtlpSink()
    sink.start()
    work = tmp_path_factory.mktemp("suite")
    gateway_port, tokenizer_port, inference_port, embedding_port = free_port(), free_port(), free_port(), free_port()
    retrieval_port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "GENAI_GATEWAY_PORT": str(gateway_port),
        "GENAI_GATEWAY_TOKENIZER_TARGET": f"127.0.0.1:{tokenizer_port}",
        "GENAI_GATEWAY_INFERENCE_TARGET": f"127.0.0.1:{inference_port}",
        "GENAI_GATEWAY_EMBEDDING_TARGET": f"127.0.0.1:{embedding_port}",
        "GENAI_GATEWAY_RETRIEVAL_TARGET": f"127.0.0.1:{retrieval_port}",
        "GENAI_EMBEDDING_PORT": str(embedding_port),
        "GENAI_RETRIEVAL_PORT": str(retrieval_port),
        "GENAI_RETRIEVAL_METRICS_PORT": str(free_port()),
        "GENAI_RETRIEVAL_DATA_DIR": str(work / "retrieval"),
        "GENAI_RETRIEVAL_EMBEDDING_TARGET": f"127.0.0.1:{embedding_port}",
        "GENAI_RETRIEVAL_INFERENCE_TARGET": f"127.0.0.1:{inference_port}",
        "GENAI_RETRIEVAL_TOKENIZER_TARGET": f"127.0.0.1:{tokenizer_port}",
        "GENAI_EMBEDDING_METRICS_PORT": str(free_port()),
        "GENAI_EMBEDDING_CACHE_DIR": str(REPO_ROOT / "var" / "cache"),
        "GENAI_TOKENIZER_PORT": str(tokenizer_port),
        "GENAI_INFERENCE_PORT": str(inference_port),
        "GENAI_INFERENCE_METRICS_PORT": str(free_port()),
        "GENAI_INFERENCE_CACHE_DIR": str(REPO_ROOT / "var" / "cache"),
        "GENAI_INFERENCE_DATA_DIR": str(work / "inference"),
        "GENAI_TOKENIZER_METRICS_PORT": str(free_port()),
        "GENAI_TOKENIZER_DATA_DIR": str(work / "tokenizer"),
        "GENAI_TOKENIZER_CACHE_DIR": str(REPO_ROOT / "var" / "cache"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s so the trace test waits little
    }
    log = work / "honcho.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "honcho"), "start", "-f", str(REPO_ROOT / "Procfile")],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_http_ok(f"{base}/readyz", 300, proc=proc, log_path=log)
        yield Suite(
            base, f"127.0.0.1:{tokenizer_port}", f"127.0.0.1:{inference_port}", f"127.0.0.1:{retrieval_port}",
            sink, log, work / "tokenizer",
        )
    finally:
        code = stop(proc, 30)
        sink.stop()
        assert code is not None, f"the suite did not stop within 30 s\n{log_tail(log)}"
