#!/usr/bin/env bash
# Run the gateway's OpenAI/TGI conformance tests (official SDKs) against the REAL inference service:
# start it on a free port, wait for SERVING, point the tests at it, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
log="$data/inference.log"
GENAI_INFERENCE_PORT=$port GENAI_INFERENCE_METRICS_PORT=0 GENAI_INFERENCE_DATA_DIR="$data" \
  $PY -m genai_inference >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do
  $PY -m genai_core.healthcheck "127.0.0.1:$port" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.5
done
GENAI_TEST_INFERENCE_TARGET="127.0.0.1:$port" GENAI_TEST_INFERENCE_MODEL=smollm2-135m-instruct \
GENAI_TEST_INFERENCE_TIMEOUT=600 \
  $PY -m pytest gateway/tests/test_openai_routes.py gateway/tests/test_tgi_routes.py -q -p no:cacheprovider "$@"
