# The two commands a new user needs: `make run` and `make test`.
# Everything else here is what they are built from.

VENV ?= .venv
PYTHON ?= python3
DB ?= sqlite:///var/demo.sqlite3
CONFIG ?= config/sip2server.toml
LISTEN ?=

BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: run test venv demo lint typecheck check clean

run: $(STAMP)
	@mkdir -p var
	$(BIN)/ils demo --db $(DB) --if-missing
	@echo "Demo SIP login: kiosk1, password kiosk1-demo, institution DEMO, location MAIN"
	@echo "(from config/sip2server.toml; try: .venv/bin/ils sip --login kiosk1 --password kiosk1-demo status)"
	exec $(BIN)/ils serve --config $(CONFIG) --db $(DB) $(if $(LISTEN),--listen $(LISTEN))

test: $(STAMP)
	scripts/system-packages.sh
	scripts/with-postgres.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: $(STAMP)
	@mkdir -p var
	$(BIN)/ils demo --db $(DB)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) var build *.egg-info
