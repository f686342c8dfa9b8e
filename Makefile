# The two commands of a fresh machine (see README):
#   make run   -- set up .venv and rebuild every run, table and figure of config.yaml
#   make test  -- set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 4
STAMP = $(VENV)/.installed

.PHONY: run test quick report mlflow-ui

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

quick: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/quick.yaml

report: $(STAMP)
	$(VENV)/bin/snakemake --report report.html

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/results/mlflow/mlflow.db --port 5000
