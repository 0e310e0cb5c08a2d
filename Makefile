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
	touch $(STAMP)

test: $(STAMP)
	scripts/ensure-test-tools
	$(VENV)/bin/ruff check src tools tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The fast loop while working: lint, types and the tests not marked slow, on all cores
# (pytest-xdist). `make test` stays the full suite.
check: $(STAMP)
	scripts/ensure-test-tools
	$(VENV)/bin/ruff check src tools tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -m "not slow" -n auto

lint: $(STAMP)
	$(VENV)/bin/ruff check src tools tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

demo: $(STAMP)
	PYTHONPATH=tools $(PY) -m atcaprov_demo

# Hardware in the loop (docs/hil.md): the kit drivers against real kernel USB devices in a QEMU
# guest (fetches qemu, a Debian kernel and busybox; a few minutes). Not part of `make test`.
hil: $(STAMP)
	HIL_PYTHON=$(abspath $(PY)) scripts/hil/run

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
