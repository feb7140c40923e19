# wattwise: `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# What is installed, per use: the demo needs the optimizer and the report, the tests
# everything (extras in pyproject.toml; a plain install is the node agent alone).
DEV_STAMP  := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck pytest system-packages venv wheel clean

venv: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

# The wheel operators install: `pip install dist/wattwise-VERSION-py3-none-any.whl` is
# the node agent; deploy/install-agent.sh takes the newest one in dist/.
wheel: | $(BIN)/python
	rm -f dist/wattwise-*.whl
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

# What the tests run for real, from Debian's packages: influxd (the store),
# prometheus and victoria-metrics (the Prometheus-compatible stores),
# shellcheck (the install scripts), systemd-analyze (the units), chromium and
# its driver (the HTML report is opened in a real browser), curl (the API
# examples of docs/api.md), jq (the reference power-plan script reads the plan
# with it).
SYSTEM_TOOLS := influxd:influxdb prometheus:prometheus victoria-metrics:victoria-metrics \
	shellcheck:shellcheck systemd-analyze:systemd chromium:chromium \
	chromedriver:chromium-driver curl:curl jq:jq

system-packages:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy wattwise tests bench

# pytest exits 5 when it collected no tests: that is a failure, not a pass.
pytest: $(DEV_STAMP) system-packages
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

test: lint typecheck pytest

# make demo DEMO_ARGS="--influx-url http://127.0.0.1:8086" uses a real InfluxDB 1.x.
DEMO_ARGS ?=
demo: $(DEMO_STAMP)
	$(BIN)/wattwise demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist demo-data *.egg-info .mypy_cache .pytest_cache .ruff_cache
