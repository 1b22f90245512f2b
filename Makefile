# Two entry points, both self-contained on a fresh machine with Python 3.11+:
#   make demo   creates .venv, installs kern with the local model, runs the offline demo
#   make test   creates .venv, installs everything the tests need, runs lint, types and tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Extras the full suite exercises. torch is pinned first so sentence-transformers takes the
# CPU build that lies on this machine's disk instead of a multi-GB CUDA download.
TEST_EXTRAS := test,anthropic,local,embed,postgres,mcp

.PHONY: demo test lint typecheck pytest chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[local]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet 'torch==2.13.0'
	$(PIP) install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/kern demo

lint: $(VENV)/.test-installed
	$(BIN)/ruff check kern tests benchmarks
	$(BIN)/ruff format --check kern

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# The UI tests drive Debian's chromium through Playwright; install it where apt is available
# (as root, or with passwordless sudo). Without it those tests skip with a loud reason.
chromium:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	} || echo "warning: could not install chromium; browser tests will be skipped"

pytest: $(VENV)/.test-installed chromium
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
