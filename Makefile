# The two commands: `make serve` and `make test`. Each sets up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: serve test test-conformance test-postgres bench bench-craftai clean chromium

# First use: about a minute with a cold package cache, a few seconds after that; uv shows its own progress.
$(READY): pyproject.toml
	@echo "modelport: setting up $(VENV) with $(PYTHON) (first use only)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade uv
	$(BIN)/uv pip install --python $(BIN)/python -e '.[test]'
	@touch $(READY)

serve: $(READY)
	$(BIN)/modelport serve

# Two workers, one test file each at a time (module-scoped servers stay in one worker): most of a test's time is
# waiting for servers and replica processes, and the suite has to stay under 10 minutes on a slow 2-core VM.
test: $(READY) chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The OpenAPI conformance run alone (tests/test_openapi_conformance.py, part of `make test` too): schemathesis over
# every operation of a seeded server.
test-conformance: $(READY)
	$(BIN)/python -m pytest -q -m conformance tests/test_openapi_conformance.py

# The dashboard's browser tests drive Debian's Chromium (Playwright uses it as is; it downloads no browser).
chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium is not installed (apt-get install chromium): the dashboard browser tests will be skipped"; }

# The database-backed tests again, on the local PostgreSQL server.
test-postgres: $(READY)
	MODELPORT_TEST_DATABASE_URL=$${MODELPORT_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/python -m pytest -q -n 2 --dist loadfile -m database

clean:
	rm -rf $(VENV) .modelport .pytest_cache

# Side-by-side benchmark (MLServer, modelport, raw ASGI floor); writes BENCHMARKS.md. Needs wrk (Debian package).
bench: $(READY)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/craftai_latency.py

# Craft AI deployments only: low_latency against elastic trigger-to-result latency (a section of BENCHMARKS.md).
bench-craftai: $(READY)
	$(BIN)/python benchmarks/craftai_latency.py
