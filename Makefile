# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install bytecode demo test test-sqlite test-postgres lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebook]'
	@$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# an editable install leaves wanka's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE is
# set (CI images) every CLI call would compile them again (~30 ms of `wanka jobs`)
bytecode:
	@$(BIN)/python -m compileall -q src

demo: install
	$(BIN)/wanka demo

lint: install
	$(BIN)/ruff check src tests

# the suite's test files run in WORKERS processes at once (pytest-xdist, a file per worker at a
# time: a file's module fixtures are set up once). Most tests wait on servers, Slurm and browsers,
# not on the CPU: three workers take about half the time of one on two cores.
WORKERS ?= 3
PYTEST  := $(BIN)/python -m pytest -q -rs -n $(WORKERS) --dist loadfile

# the whole suite, as CI runs it: what it needs installed where this machine allows (.ci/setup says
# in one line what it cannot), every test on SQLite, then the control plane's on PostgreSQL
test: lint
	@bash .ci/setup
	@bash .ci/reachable  # as root, tasks run under tenant accounts: they must reach the venv
	$(PYTEST)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then $(MAKE) --no-print-directory test-postgres; \
	else echo "make test: no PostgreSQL (Debian's postgresql package): its pass is skipped"; fi

# only the SQLite pass, with nothing installed (quicker while working)
test-sqlite: lint
	@bash .ci/reachable
	$(PYTEST)

# the tests whose outcome rests on the database again, on a throwaway PostgreSQL (needs Debian's
# postgresql package): the control plane, and the attacks on what it stores (bounds, caps, bulk
# job control, idempotency keys). The attacks on HTTP framing, terminals, accounts and scheduling
# do not touch SQL that differs between the two, and run once.
PG_TESTS := tests/server tests/cli/test_remote.py tests/security/test_inputs.py \
	tests/security/test_caps.py tests/security/test_issue15_attacks.py
test-postgres: install
	@bash .ci/reachable
	WANKA_TEST_POSTGRES=1 $(PYTEST) $(PG_TESTS)

bench: install bytecode
	$(BIN)/wanka bench core
	$(BIN)/wanka bench twin
	$(BIN)/wanka bench api
	$(BIN)/wanka bench cli
	$(BIN)/wanka bench local
	$(BIN)/wanka bench console
	$(BIN)/wanka bench gateway
	-$(BIN)/wanka bench slurm  # needs root, slurm-wlm and munge (as .ci/run installs)
	-$(BIN)/wanka bench k8s  # needs root and the Kubernetes kit (shared/k8s; .ci/setup installs its packages)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build src/*.egg-info
