"""Snakemake checkpoint `select_tuned`: the search has ended on every tuned problem; each optimizer's learning rate,
chosen on validation metrics only, and the tuned reruns it makes (see adabench.workflow.steps.select_tuned)."""
from adabench.workflow.steps import select_tuned, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
select_tuned(sm.config, sm.input.plan, list(sm.input.rounds), sm.output, log)
