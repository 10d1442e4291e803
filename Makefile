# Two commands for a fresh clone: `make demo` (the main job) and `make test` (the whole suite).
# Each creates or reuses .venv and installs what it needs; nothing else must be installed by hand.
#
# Everything the project installs for itself (the dev, test and bench tool chains and all their
# dependencies) comes from constraints.txt, the lock that `make lock` writes; the library's own
# runtime dependencies stay ranges in pyproject.toml, so users never inherit these pins.
# `make test-latest` runs the suite in .venv-latest against the newest releases (the drift check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
PIP = -m pip install -q --disable-pip-version-check
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

.PHONY: demo test bench chaos lock test-latest clean redis-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The build back-end comes from the lock too (no build isolation), so nothing floats.
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python $(PIP) -c $(LOCK) setuptools wheel
	$(BIN)/python $(PIP) -c $(LOCK) --no-build-isolation -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/flyllm demo

test: $(STAMP) redis-server
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The gateway scenario also runs Portkey's gateway on node: npm ci installs it from its lock.
bench: $(STAMP)
	$(BIN)/python $(PIP) -c $(LOCK) --no-build-isolation -e '.[dev,bench]'
	@if command -v npm >/dev/null 2>&1; then \
		cd bench/gateway/portkey && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the gateway scenario will report Portkey unavailable"; fi
	$(BIN)/python -m bench

chaos: $(STAMP)
	FLYLLM_CHAOS_SCALE=10 $(BIN)/python -m pytest tests/chaos -s -q -p no:cacheprovider -o timeout=600

# Resolve the newest releases of every extra the project installs for itself, together, in a
# throw-away venv, and write them as exact pins. Review the diff, run `make test`, commit.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python $(PIP) --upgrade setuptools wheel
	.venv-lock/bin/python $(PIP) --no-build-isolation -e '.[dev,bench]'
	{ echo "# The lock for everything flyllm's own tooling installs (dev, test and bench extras and"; \
	  echo "# their dependencies), written by \`make lock\` with $$(.venv-lock/bin/python -V) on $$(date -u +%Y-%m-%d)."; \
	  echo "# Used as pip constraints by make demo/test/bench; never a runtime pin for users."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v -i '^pip=='; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# The drift check: the same suite against the newest release of everything, in its own venv.
# Linters are left out on purpose (a new ruff rule is not drift in what flyllm talks to);
# mypy stays, since the SDKs' new type stubs are.
test-latest: redis-server
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python $(PIP) --upgrade pip setuptools wheel
	.venv-latest/bin/python $(PIP) --upgrade --upgrade-strategy eager -e '.[dev,bench]'
	.venv-latest/bin/python -m pip list --format=freeze | grep -i -E \
		'^(openai|anthropic|google-genai|mistralai|cohere|ollama|litellm|aiohttp|redis|mypy)=='
	.venv-latest/bin/mypy
	.venv-latest/bin/python -m pytest -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-latest .venv-lock .mypy_cache .pytest_cache .ruff_cache

# The Redis tests need a redis-server (or REDIS_URL): install Debian's when missing (CI is root).
redis-server:
	@if [ -z "$$REDIS_URL" ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server (Debian package) for the Redis tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
			>/dev/null || echo "could not install redis-server: the Redis tests will fail"; \
	fi
