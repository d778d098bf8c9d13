# frappe_mpesa: `make demo` runs the product against the embedded Daraja sandbox,
# `make test` runs the test suite. Both set everything up on a fresh Debian machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pyproject.toml's [deploy.dependencies.apt] packages (what the extension needs to build), and a venv.
APT_PACKAGES := $(shell sed -n '/^\[deploy\.dependencies\.apt\]/,/^\[/s/^packages *= *\[\(.*\)\]/\1/p' \
	pyproject.toml | tr -d '",') python3-venv
BENCH_PACKAGES := nginx-light
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SOURCES := setup.py pyproject.toml $(wildcard csrc/*.c csrc/*.h)
# pyproject.toml's [build-system] requires, quoted for the shell. pip builds the normal extension in
# an isolated environment with them; the instrumented builds run setup.py in the venv, which needs
# them installed there (the venv's own setuptools may be too old to read pyproject.toml's license).
BUILD_REQUIRES := $(shell sed -n '/^\[build-system\]/,/^\[/s/^requires *= *\[\(.*\)\]/\1/p' pyproject.toml | tr ',' ' ')
# Instrumented builds are made in copies of the tree under build/, never in place.
TREE := setup.py pyproject.toml README.md csrc frappe_mpesa tests
SANITIZE_DIR := build/sanitize
SANITIZE_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# gcc's sanitizer runtimes come first; leaks are left to `make valgrind` (the interpreter's own exit
# leaks are not ours); reports go to files, where pytest's capture cannot swallow them.
SANITIZE_ENV := LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$(abspath $(SANITIZE_DIR))/reports/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(abspath $(SANITIZE_DIR))/reports/ubsan \
	PYTHONMALLOC=malloc PYTHONPATH=.
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 600

.PHONY: demo test bench build deps clean sanitize valgrind fuzz

demo: $(VENV)/.installed
	$(PY) -m frappe_mpesa demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(VENV)/.installed
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py
	$(PY) bench/instructions.py
	$(PY) bench/clients.py
	$(PY) bench/pool.py

build: $(VENV)/.installed

# $(call copy_tree,DIR): DIR made afresh with the sources, without the extension built here.
copy_tree = rm -rf $(1) && mkdir -p $(1) && cp -r $(TREE) $(1)/ && rm -f $(1)/frappe_mpesa/_daraja*.so \
	&& find $(1) -name __pycache__ -prune -exec rm -rf {} +

# The test suite against an ASan+UBSan build of the extension. Fails on a failing test or on any report.
sanitize: $(VENV)/.installed
	$(call copy_tree,$(SANITIZE_DIR))
	cd $(SANITIZE_DIR) && DARAJA_CFLAGS="$(SANITIZE_CFLAGS)" DARAJA_LDFLAGS="-fsanitize=address,undefined" \
		$(abspath $(PY)) setup.py -q build_ext --inplace
	cd $(SANITIZE_DIR) && $(SANITIZE_ENV) $(abspath $(PY)) -c 'import os, sys, frappe_mpesa._daraja as m; \
		print("sanitize: testing", m.__file__); sys.exit(not m.__file__.startswith(os.getcwd()))'
	cd $(SANITIZE_DIR) && { $(SANITIZE_ENV) $(abspath $(PY)) -m pytest -q -p no:cacheprovider tests; \
		echo $$? > pytest.status; } 2>&1 | tee pytest.log
	@cd $(SANITIZE_DIR) && status=$$(cat pytest.status); result=$$(tail -n 1 pytest.log); \
	if [ -n "$$(ls reports 2>/dev/null)" ]; then \
		echo "sanitize: FAILED: sanitizer reports in $(SANITIZE_DIR)/reports:"; head -n 60 reports/*; exit 1; \
	elif [ "$$status" != 0 ]; then \
		echo "sanitize: FAILED: $$result (exit status $$status), no sanitizer report"; exit 1; \
	else echo "sanitize: PASSED: $$result, no sanitizer report"; fi

# Every entry point of the extension, many times, under valgrind's memcheck (fuzz/memcheck.py).
valgrind: $(VENV)/.installed
	@$(MAKE) --no-print-directory deps APT_PACKAGES=valgrind
	$(PY) fuzz/memcheck.py --out build/valgrind

# The atheris harnesses, FUZZ_SECONDS each, against a clang ASan+libFuzzer build (fuzz/README.md).
fuzz: $(VENV)/.installed
	@$(MAKE) --no-print-directory deps APT_PACKAGES=clang
	$(PY) -m pip install -q atheris
	$(call copy_tree,$(FUZZ_DIR)/tree)
	cd $(FUZZ_DIR)/tree && CC=clang DARAJA_CFLAGS="-g -O1 -fsanitize=address,fuzzer-no-link -fno-omit-frame-pointer" \
		DARAJA_LDFLAGS="-fsanitize=address" $(abspath $(PY)) setup.py -q build_ext --inplace
	$(PY) fuzz/run.py --tree $(FUZZ_DIR)/tree --out $(FUZZ_DIR) --seconds $(FUZZ_SECONDS)

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
	$(PY) -m pip install -q $(BUILD_REQUIRES)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf build $(VENV) *.egg-info frappe_mpesa/_daraja*.so bench/out
