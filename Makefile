# reelhash — `make demo` and `make test` are all a new user needs (Python 3.11 on the PATH).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

# (Re)install when the project's dependencies change; pip takes torch/torchvision from the local disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

demo: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/reelhash demo

bench: $(STAMP)
	$(BIN)/python benchmarks/decode_sampling.py
	$(BIN)/python benchmarks/hamming_vs_float.py

clean:
	rm -rf $(VENV) reelhash-data demo-data .pytest_cache
