# The two commands a new machine needs: `make demo` and `make test`.
# Each creates .venv with python3 -m venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stanch-installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.stanch/prefect
export DO_NOT_TRACK := 1

.PHONY: demo demo-vendor test lint typecheck unit debian-packages fuzz bench schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@# Bytecode ahead of time: start-up matters for `stanch validate`, and some machines never write it.
	$(BIN)/python -m compileall -q flows integrations > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/stanch demo

# The vendor breach end to end in the sandbox: every credential, every consumer, then revoke.
demo-vendor: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/stanch demo --vendor

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check flows integrations tests bench
	$(BIN)/ruff format --check flows integrations tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages some tests use as real peers: PostgreSQL (the Prefect server on PostgreSQL) and Chromium (the
# after-action report rendered headless). Installed once, before the tests, where this is root with apt-get;
# elsewhere those tests skip and say why.
DEBIAN_PACKAGES := postgresql chromium
debian-packages:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages for the tests:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q >/dev/null 2>&1; \
		apt-get install -y -q -o DPkg::Lock::Timeout=600 $$missing >/dev/null 2>&1 || echo "could not install$$missing"; \
	fi

# Two workers (the machine's two cores), one test file per worker at a time: each worker has its own Prefect API
# and sandbox, started once per worker session.
PYTEST_WORKERS ?= 2
unit: $(STAMP) debian-packages
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# The long property-based run: 10,000 random examples for each fuzz test (playbook loader and validator,
# expressions, alerts); `make test` runs a few hundred repeatable ones. Peak memory is printed at the end.
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	STANCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s -p no:cacheprovider --timeout=0 \
		tests/test_fuzz_playbooks.py tests/test_fuzz_alerts.py

bench: $(STAMP)
	$(BIN)/python bench/validate_speed.py
	$(BIN)/python bench/review_speed.py
	$(BIN)/python bench/fanout_speed.py
	$(BIN)/python bench/approval_latency.py
	$(BIN)/python bench/alert_latency.py

schema: $(STAMP)
	$(BIN)/stanch schema > playbooks/schema.json
	$(BIN)/python -m flows.tabletop.scenario > playbooks/scenarios/schema.json
	$(BIN)/python -c "from flows.vendors.inventory import write_schema; write_schema()"

clean:
	rm -rf $(VENV) .stanch .pytest_cache .mypy_cache .ruff_cache
