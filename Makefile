# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test check demo hil lint typecheck pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	# pytrustplatform (Microchip's manifest decoder, checks our manifest export) pins libraries
	# that clash with the test extra: it gets a venv of its own, driven by its test as a program
	$(PYTHON) -m venv $(VENV)/tools-ptp
	$(VENV)/tools-ptp/bin/pip install --quiet 'pytrustplatform>=1.1' 'python-jose>=3.3'
	touch $(STAMP)

test: $(STAMP)
	scripts/ensure-test-tools
	$(VENV)/bin/ruff check src tools tests bench examples
	$(VENV)/bin/ruff format --check src tools tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The fast loop while working: lint, types and the tests not marked slow, on all cores
# (pytest-xdist). `make test` stays the full suite.
check: $(STAMP)
	scripts/ensure-test-tools
	$(VENV)/bin/ruff check src tools tests bench examples
	$(VENV)/bin/ruff format --check src tools tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -m "not slow" -n auto

lint: $(STAMP)
	$(VENV)/bin/ruff check src tools tests bench examples
	$(VENV)/bin/ruff format --check src tools tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

demo: $(STAMP)
	PYTHONPATH=tools $(PY) -m atcaprov_demo $(DEMO_ARGS)

# Hardware in the loop (docs/hil.md): the kit drivers against real kernel USB devices in a QEMU
# guest (fetches qemu, a Debian kernel and busybox; a few minutes). Not part of `make test`.
hil: $(STAMP)
	HIL_PYTHON=$(abspath $(PY)) scripts/hil/run

# bench_server.py first: the others delete many files when they end, and on some file systems
# (ext4 without a journal) creating files is slow for minutes after that (docs/benchmarks.md)
BENCHES := bench/bench_server.py $(filter-out bench/bench_server.py,$(sort $(wildcard bench/bench_*.py)))

bench: $(STAMP)
	for b in $(BENCHES); do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
