"""Snakemake checkpoint `search_ended`: a problem's search has ended (its last round adds no rate); every round's
decisions in one table, and each optimizer's chosen learning rate (see adabench.workflow.steps.search_ended)."""
from adabench.workflow.steps import search_ended, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
search_ended(sm.config, sm.wildcards.problem, list(sm.input.rounds), sm.output, log)
