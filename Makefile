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

# The self-check kiosk (docs/kiosk.md). Start the server first (`make run` in
# another terminal); KIOSK_CONFIG names the kiosk's configuration.
KIOSK_CONFIG ?= config/kiosk.toml

.PHONY: kiosk kiosk-locale screenshots

kiosk: $(STAMP)
	@mkdir -p var
	$(BIN)/python -m kiosk.pocompile --check || $(BIN)/python -m kiosk.pocompile
	exec $(BIN)/ils kiosk --config $(KIOSK_CONFIG)

# Compile the kiosk's gettext catalogues (kiosk/locale/*/LC_MESSAGES/*.po -> .mo).
kiosk-locale: $(STAMP)
	$(BIN)/python -m kiosk.pocompile

# PNGs of every kiosk screen in English, French and high contrast, offscreen.
screenshots: $(STAMP)
	env -u DISPLAY $(BIN)/python -m kiosk.screenshots --out docs/screenshots
