# opsbook — two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_WS ?= demo-workspace

.PHONY: demo console test check lint types bench clean install

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh "$(DEMO_WS)"

# The console on the demo workspace with the sandbox running (Ctrl-C stops the server; then
# `.venv/bin/opsbook --workspace $(DEMO_WS) sandbox down`).
console: $(STAMP)
	@test -d "$(DEMO_WS)" || bash scripts/demo.sh "$(DEMO_WS)"
	$(BIN)/opsbook --workspace "$(DEMO_WS)" sandbox up --reuse
	$(BIN)/opsbook --workspace "$(DEMO_WS)" serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache .mypy_cache .ruff_cache
