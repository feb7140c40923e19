# wattwise: `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest system-packages venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# What the tests run for real, from Debian's packages: influxd (the store),
# prometheus and victoria-metrics (the Prometheus-compatible stores),
# shellcheck (the install scripts), systemd-analyze (the units), chromium and
# its driver (the HTML report is opened in a real browser).
SYSTEM_TOOLS := influxd:influxdb prometheus:prometheus victoria-metrics:victoria-metrics \
	shellcheck:shellcheck systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver

system-packages:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy wattwise tests bench

# pytest exits 5 when it collected no tests: that is a failure, not a pass.
pytest: venv system-packages
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

test: lint typecheck pytest

# make demo DEMO_ARGS="--influx-url http://127.0.0.1:8086" uses a real InfluxDB 1.x.
DEMO_ARGS ?=
demo: venv
	$(BIN)/wattwise demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
