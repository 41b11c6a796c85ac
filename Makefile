# Each target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) -e ".[test]"
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PIP) -e ".[plot,tiff]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PIP) -e ".[bench]"
	touch $@

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(VENV)/.installed-demo
	$(VENV)/bin/magtrack-dask demo --out demo-output

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/core_speed.py

clean:
	rm -rf $(VENV) demo-output bench-output
