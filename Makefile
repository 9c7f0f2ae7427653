# The README's commands. Each target sets up what it needs: a virtual environment
# with the pinned dependencies (.venv), then the schema and default policy.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint policy-check browser bench soak clean

$(BIN)/workflow-authz: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Serve on the embedded SQLite store (./var), creating schema, default policy and a first key.
run: $(BIN)/workflow-authz
	$(BIN)/workflow-authz init --quickstart --host $(HOST) --port $(PORT)
	$(BIN)/workflow-authz serve --host $(HOST) --port $(PORT)

## Lint, type-check, check the shipped policy, then the whole test suite
## (PostgreSQL tests skip when no server answers, outside CI).
test: $(BIN)/workflow-authz lint policy-check browser
	$(BIN)/python -m pytest

## Debian's Chromium for the admin form's browser tests (Playwright drives it; nothing is downloaded
## by Playwright itself) and wrk for the HTTP benchmarks. Installed only when missing and when we
## may (root, apt-get present).
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/wrk ]; } && command -v apt-get >/dev/null \
		&& [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium wrk >/dev/null; \
	fi

## The repository's own policy files, as a school's CI would check theirs.
policy-check: $(BIN)/workflow-authz
	$(BIN)/workflow-authz check
	$(BIN)/workflow-authz test --min-coverage 100

lint: $(BIN)/workflow-authz
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

## Benchmarks (not run in CI; their quick modes are tested there). Each prints one table.
bench: $(BIN)/workflow-authz browser
	$(BIN)/python -m bench.decisions
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.propagation
	$(BIN)/python -m bench.shapes
	$(BIN)/python -m bench.authzen
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.servers

## Ten minutes of mixed load; reports errors and memory growth.
soak: $(BIN)/workflow-authz browser
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
