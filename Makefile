# Two entry points on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test
BENCHSTAMP := $(VENV)/.installed-bench

.PHONY: run test test-slow bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[fast]'
	touch $@

$(TESTSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[fast,test]'
	@command -v kcat >/dev/null 2>&1 || command -v kafkacat >/dev/null 2>&1 || \
	  { (apt-get update -qq && apt-get install -y -qq kcat) >/dev/null 2>&1 || \
	    echo "warning: could not install kcat with apt-get; kcat compat tests will fail"; }
	touch $@ $(STAMP)

$(BENCHSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[fast,test,bench]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/logstore serve --override log.dirs=./data

test: $(TESTSTAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(TESTSTAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(BENCHSTAMP) $(TESTSTAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) build *.egg-info
