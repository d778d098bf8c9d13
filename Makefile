# frappe_mpesa: `make demo` runs the product against the embedded Daraja sandbox,
# `make test` runs the test suite. Both set everything up on a fresh Debian machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := build-essential pkg-config libcurl4-openssl-dev libssl-dev python3-dev python3-venv
BENCH_PACKAGES := nginx-light
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SOURCES := setup.py pyproject.toml $(wildcard csrc/*.c csrc/*.h)

.PHONY: demo test bench build deps clean

demo: $(VENV)/.installed
	$(PY) -m frappe_mpesa demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(VENV)/.installed
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py

build: $(VENV)/.installed

# System packages: installed only when one is missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The virtualenv, rebuilt in place (pip install -e) whenever the C sources change.
$(VENV)/.installed: $(SOURCES)
	@$(MAKE) --no-print-directory deps
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf build $(VENV) *.egg-info frappe_mpesa/_daraja*.so bench/out
