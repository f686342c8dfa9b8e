# The two commands of a fresh machine (see README):
#   make run   -- set up .venv and rebuild every run, table and figure of the default study (config.yaml)
#   make test  -- set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 4
STAMP = $(VENV)/.installed
# every package at one exact version with its hashes (pip-compile's output from requirements.txt; `make lock`)
LOCK = requirements.lock

.PHONY: run test quick report mlflow-ui lock

# the locked dependencies (pip refuses any file whose hash the lock does not list), then this package itself,
# editable (its console script: adabench). A range in requirements.txt would resolve to that day's newest
# releases, and a newer matplotlib or contourpy draws the committed figures with other bytes.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock after editing requirements.txt: pip-compile keeps every pin the lock already has and resolves
# only what changed; UPGRADE=--upgrade moves every package to its newest allowed release, UPGRADE="--upgrade-package
# pandas" one package. environment.yml's pip section is then rewritten to the same pins (tests/test_environment.py
# checks that the three agree). pip-tools, a tool of this target only, lives in a venv of its own.
LOCK_TOOLS = $(VENV)/lock-tools
UPGRADE ?=
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.6.2; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links $(UPGRADE) --output-file=$(LOCK) requirements.txt
	sed '/^  - pip:$$/q' environment.yml > environment.yml.new
	grep -E '^[A-Za-z0-9]' $(LOCK) | sed -e 's/ .*//' -e 's/^/      - /' >> environment.yml.new
	mv environment.yml.new environment.yml

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

quick: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/quick.yaml

report: $(STAMP)
	$(VENV)/bin/snakemake --report report.html

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

# the study's MLflow store in the UI; prints the address of its table of runs (CONFIG: the study's file, if any)
CONFIG ?=
mlflow-ui: $(STAMP)
	$(VENV)/bin/adabench mlflow-ui $(CONFIG) --port 5000
