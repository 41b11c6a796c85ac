# Each target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: test slurm-packages demo bench clean

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

# tests/test_workflows_slurm.py starts a private SLURM (munged, slurmctld, slurmd) and needs Debian's
# slurm-wlm and munge: installed here when root with apt-get, quietly and only once. Never fails the
# build: without them those tests skip and say why.
SLURM_BINARIES := munged slurmctld slurmd sbatch squeue scancel sinfo

slurm-packages:
	-@missing=0; for b in $(SLURM_BINARIES); do PATH="$$PATH:/usr/sbin" command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 1 ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq slurm-wlm munge || { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; }; } \
	    >/dev/null 2>&1 || echo "make test: could not install slurm-wlm and munge; the SLURM tests will skip"; \
	fi; true

test: $(VENV)/.installed-test slurm-packages
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(VENV)/.installed-demo
	$(VENV)/bin/magtrack-dask demo --out demo-output

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/core_speed.py

clean:
	rm -rf $(VENV) demo-output bench-output
