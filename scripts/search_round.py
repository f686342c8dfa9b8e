"""Snakemake checkpoint `search_round`: one round of the learning-rate search on one problem (see
adabench.workflow.steps.search_round and adabench.study.search)."""
from adabench.workflow.steps import search_round, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
search_round(sm.config, sm.wildcards.problem, int(sm.wildcards.round), sm.output.decisions, sm.output.sources, log)
