# The two commands of a fresh machine (see README):
#   make run   -- set up .venv and rebuild every run, table and figure of the default study (config.yaml)
#   make test  -- set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 4
STAMP = $(VENV)/.installed

.PHONY: run test quick report mlflow-ui

# the pinned dependencies, then this package itself, editable (its console script: adabench)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

quick: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/quick.yaml

report: $(STAMP)
	$(VENV)/bin/snakemake --report report.html

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile tests

# the study's MLflow store in the UI; prints the address of its table of runs (CONFIG: the study's file, if any)
CONFIG ?=
mlflow-ui: $(STAMP)
	$(VENV)/bin/adabench mlflow-ui $(CONFIG) --port 5000
