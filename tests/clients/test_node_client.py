"""A Node.js client built from the .proto AS IS talks to the real tokenizer process.

The service runs as ``python -m genai_tokenizer`` on a free port, the client is
``tests/clients/node/tokenizer_client.js`` (@grpc/grpc-js + @grpc/proto-loader, pinned in
package-lock.json; ``make test`` runs ``npm ci`` there first). Finally SIGTERM must stop
the service gracefully, with exit code 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, free_port, log_tail, start_service, stop, wait_grpc_serving

NODE_DIR = REPO_ROOT / "tests" / "clients" / "node"
CLIENT = NODE_DIR / "tokenizer_client.js"
CACHE_DIR = REPO_ROOT / "var" / "cache"  # converted built-in tokenizers, shared with `make run`

pytestmark = pytest.mark.e2e


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "`node` is not on PATH: install Node.js >= 18 to run the cross-language client tests", pytrace=False
        )
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"{package} is missing from {NODE_DIR / 'node_modules'}: run `npm ci` in {NODE_DIR} "
                "(`make test` does it)",
                pytrace=False,
            )
    return node


def test_node_client_against_tokenizer_process(tmp_path: Path) -> None:
    node = _require_node()
    port = free_port()
    target = f"127.0.0.1:{port}"
    log_path = tmp_path / "tokenizer.log"
    env = {
        "GENAI_TOKENIZER_HOST": "127.0.0.1",
        "GENAI_TOKENIZER_PORT": str(port),
        "GENAI_TOKENIZER_METRICS_PORT": "0",
        "GENAI_TOKENIZER_DATA_DIR": str(tmp_path / "data"),
        "GENAI_TOKENIZER_CACHE_DIR": str(CACHE_DIR),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = start_service("genai_tokenizer", env, log_path)
    try:
        wait_grpc_serving(target, 120, proc=proc, log_path=log_path)

        run = subprocess.run(
            [node, str(CLIENT), target],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        assert run.returncode == 0, (
            f"node client failed ({run.returncode}):\n{run.stderr}\nservice log:\n{log_tail(log_path)}"
        )
        result = json.loads(run.stdout)
        _check(result)
    finally:
        # SIGTERM also when something above failed: never leave the service running.
        returncode = stop(proc, 15)
    assert returncode == 0, (
        f"tokenizer did not shut down gracefully on SIGTERM (exit {returncode}):\n{log_tail(log_path)}"
    )


def _check(result: dict) -> None:
    """The answers the Python servicer tests expect, as the Node client decoded them."""
    tokenize = result["tokenize"]
    assert tokenize["request_id"] == "node-tokenize-1"
    assert tokenize["tokenizer"] == "smollm2-135m-instruct"
    assert tokenize["ids"] == [19556, 905]
    assert tokenize["tokens"] == ["Hello", "Ġworld"]
    assert tokenize["offsets"] == [[0, 5], [5, 11]]
    assert tokenize["special_flags"] == [False, False]
    assert tokenize["token_count"] == 2

    assert result["count"]["counts"] == [2]
    assert result["count"]["total"] == 2

    chat = result["chat"]
    assert "<|im_start|>user\nHello!<|im_end|>" in chat["text"]
    assert chat["text"].endswith("<|im_start|>assistant\n")
    assert chat["token_count"] == chat["ids_length"] > 0

    info = result["tokenizer"]
    assert info["id"] == "smollm2-135m-instruct"
    assert info["vocab_size"] == 49152
    assert info["kind"] == "TOKENIZER_KIND_BPE"  # enums arrive by name: proto-loader read the contract
    assert info["source"] == "TOKENIZER_SOURCE_BUILTIN"
    assert info["has_chat_template"] is True
    assert len(info["revision"]) == 64

    unknown = result["unknown_tokenizer"]
    assert unknown["code"] == 5, unknown
    assert unknown["name"] == "NOT_FOUND"
    assert "no-such-tokenizer" in unknown["details"]
