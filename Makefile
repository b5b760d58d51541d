# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean system-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian libraries WeasyPrint uses (Pango) and the fonts invoices need; skipped, with a note,
# where apt-get is missing or we are not root.
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP) system-deps
	$(BIN)/billing demo

# The linter first ([tool.ruff] in pyproject.toml), then the tests. PostgreSQL and Redis are
# started where installed; the S3 tests start their own moto server. Tests whose service is
# missing skip, or fail under CI=true. TEST_WORKERS processes run whole test modules each
# (pytest-xdist; a module's fixtures are set up once). -rs prints why a test skipped.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps
	$(BIN)/ruff check
	@bash scripts/start-services.sh
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: $(STAMP)
	$(BIN)/python bench/ingest_bench.py

clean:
	rm -rf $(VENV) .billing
