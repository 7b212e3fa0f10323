#!/usr/bin/env bash
# Start the suite as `make run` does, wait until it is ready, run the benchmarks, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
log=$(mktemp)
mkdir -p var && python -m genai_core.services procfile > var/Procfile
honcho start -d "$PWD" -f var/Procfile >"$log" 2>&1 &
suite=$!
trap 'kill -INT $suite 2>/dev/null; wait $suite 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://${GENAI_GATEWAY_HOST:-127.0.0.1}:${GENAI_GATEWAY_PORT:-8080}/readyz" >/dev/null && break
  kill -0 $suite 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.5
done
python benchmarks/tokenizer_latency.py "$@"
