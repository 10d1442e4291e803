# Two commands for a fresh clone: `make demo` (the main job) and `make test` (the whole suite).
# Each creates or reuses .venv and installs what it needs; nothing else must be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench chaos clean redis-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/flyllm demo

test: $(STAMP) redis-server
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

chaos: $(STAMP)
	FLYLLM_CHAOS_SCALE=10 $(BIN)/python -m pytest tests/chaos -s -q -p no:cacheprovider -o timeout=600

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The Redis tests need a redis-server (or REDIS_URL): install Debian's when missing (CI is root).
redis-server:
	@if [ -z "$$REDIS_URL" ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server (Debian package) for the Redis tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
			>/dev/null || echo "could not install redis-server: the Redis tests will fail"; \
	fi
