# The two commands of the README: `make run` (the main job) and `make test` (the suite).
# Each creates or updates the virtual environment in .venv by itself when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@

# The main job: the pipeline's quick profile over every model. Offline data beside the checkout
# (../shared/data: MNIST, Tiny Shakespeare, WikiText-2) is used when present; otherwise rlgen downloads.
DATA_ROOT ?= $(wildcard ../shared/data)
run: $(VENV)/.installed
	$(BIN)/rlgen run pipeline $(if $(DATA_ROOT),--set data_root=$(DATA_ROOT)) $(ARGS)

# tests/test_ui_browser.py drives Debian's chromium headless against `rlgen ui`; CI runs this target as root on a
# fresh Debian machine without it, so install it once here (the test fails, rather than skips, when it is missing).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The shape first (seconds): lint, format, types, the layer contracts; then the tests.
# Two pytest workers by default: much of the suite waits on servers and subprocesses, not on the CPU.
TEST_WORKERS ?= 2
test: $(VENV)/.installed /usr/bin/chromium check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS)

check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks $(ARGS)

clean-venv:
	rm -rf $(VENV)
